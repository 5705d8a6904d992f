"""Per-cluster connection health: what the daemon reports and what backoff is based on.

Every request a ``ClusterClient`` makes reports its outcome here: a response of any kind
proves the cluster is reachable; a refused connection, a TLS failure or a timeout counts
as a failure; 401/403 on every request means the credential is refused. Transitions —
not every request — are published to subscribers (the daemon turns them into
``ClusterConnected`` / ``ClusterUnreachable`` facts) and to ``federationd_cluster_state``.

The log gets one line per state change (not per failed request, nor per watched kind):
an unreachable remote says so once, and again when it is back.

Reasons are produced by this package from exception *classes* and HTTP codes, so they
carry no credential.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from collections.abc import Callable

from federationd.metrics import METRICS, Metrics

log = logging.getLogger(__name__)


class ClusterState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    UNAUTHORIZED = "unauthorized"


@dataclasses.dataclass(frozen=True)
class HealthSnapshot:
    cluster: str
    state: ClusterState
    #: Wall-clock seconds since the epoch when ``state`` was entered.
    since: float
    reason: str = ""
    consecutive_failures: int = 0
    last_success: float | None = None


Listener = Callable[[HealthSnapshot], None]


class ClusterHealth:
    """The current state of one cluster's connection, with transition callbacks."""

    def __init__(
        self,
        cluster: str,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        failure_threshold: int = 1,
    ) -> None:
        self.cluster = cluster
        self._clock = clock
        self._metrics = metrics or METRICS
        self._threshold = max(1, failure_threshold)
        self._listeners: list[Listener] = []
        self._state = ClusterState.CONNECTING
        self._since = clock()
        self._reason = ""
        self._failures = 0
        self._last_success: float | None = None
        self._metrics.set_cluster_state(cluster, self._state.value)

    @property
    def state(self) -> ClusterState:
        return self._state

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            cluster=self.cluster, state=self._state, since=self._since, reason=self._reason,
            consecutive_failures=self._failures, last_success=self._last_success)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on every state transition; returns an unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _enter(self, state: ClusterState, reason: str) -> None:
        if state == self._state and reason == self._reason:
            return
        changed_state = state != self._state
        if changed_state:
            if state == ClusterState.CONNECTED:
                log.info("cluster %s: connected", self.cluster)
            else:
                log.warning("cluster %s: %s: %s", self.cluster, state.value, reason or "-")
        self._state = state
        self._reason = reason
        if changed_state:
            self._since = self._clock()
            self._metrics.set_cluster_state(self.cluster, state.value)
        snap = self.snapshot()
        for listener in list(self._listeners):
            listener(snap)

    def record_success(self) -> None:
        self._failures = 0
        self._last_success = self._clock()
        self._enter(ClusterState.CONNECTED, "")

    def record_failure(self, reason: str) -> None:
        """The cluster did not answer (connection, TLS, timeout)."""
        self._failures += 1
        if self._failures >= self._threshold:
            self._enter(ClusterState.UNREACHABLE, reason)

    def record_unauthorized(self, reason: str) -> None:
        """The cluster answered but refused the credential (401)."""
        self._failures = 0
        self._last_success = self._clock()
        self._enter(ClusterState.UNAUTHORIZED, reason)

    def record_rejected(self, reason: str) -> None:
        """The kubeconfig itself was refused before any connection was tried."""
        self._enter(ClusterState.REJECTED, reason)
