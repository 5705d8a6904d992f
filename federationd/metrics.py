"""Every metric federationd exports, registered in one registry that is not the global one.

Names follow controller-runtime and client-go where a counterpart exists
(``controller_runtime_reconcile_total``, ``workqueue_*``, ``rest_client_requests_total``,
``leader_election_master_status``) so that existing dashboards and alerts work unchanged;
federation facts get ``federationd_*`` names.

Why a class and not module globals: tests run several daemons, electors and queues in one
process, and each wants its own numbers. ``Metrics()`` builds a fresh registry with every
family; components take ``metrics=`` and fall back to the process-wide ``METRICS`` (which
``/metrics`` serves by default).

Label rules: base units, ``_total`` on counters, and only bounded label values — cluster
names (bounded by configuration), controller and queue names, HTTP methods and codes,
results. Never an object name, never a token.

Label sets known in advance are exported at 0 from the start, as controller-runtime does
for its controllers: a series that only appears with its first increment is invisible to
``rate()``/``increase()`` (they need two samples), so the first reconcile error, failed
write or event of a kind would never show on a dashboard or in an alert, and a panel over
a counter that has not moved yet would say "No data" instead of 0. Cluster states,
controllers, work queues and write results are initialised when the cluster's components
start; event types when the registry is built. ``leader_election_master_status`` exists
only with leader election on, as in client-go: without ``--leader-elect`` there is no
Lease to hold, and a 0 would read as "nobody leads".
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from events.types import Event

#: controller-runtime's reconcile-time buckets.
_RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7,
    0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0,
    10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
)
#: client-go's workqueue buckets: ExponentialBuckets(10e-9, 10, 10).
_WORKQUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(10))
#: Fact observed → write applied; seconds, from "instant" to "a minute is far too long".
_CONVERGENCE_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

#: Values of ``federationd_cluster_state{state}``; exactly one is 1 per cluster.
CLUSTER_STATES = ("connecting", "connected", "unreachable", "rejected", "unauthorized")
#: Values of ``controller_runtime_reconcile_total{result}`` (controller-runtime's, less the
#: requeue results a work queue with per-item backoff never produces).
RECONCILE_RESULTS = ("success", "error")
#: Values of ``federationd_actuations_total{result}``.
ACTUATION_RESULTS = ("success", "error")


def _event_types() -> list[str]:
    """Every event type in the catalogue (``type(event).__name__``, as appended)."""
    out: set[str] = set()
    todo = list(Event.__subclasses__())
    while todo:
        cls = todo.pop()
        out.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return sorted(out)


class Metrics:
    """One registry with every family. Cheap to build; build one per test that counts."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._rejected: set[str] = set()

        # --- controller-runtime -------------------------------------------------------
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller.",
            ["controller", "result"], registry=r)
        self.reconcile_errors_total = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller.",
            ["controller"], registry=r)
        self.reconcile_time_seconds = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller.",
            ["controller"], buckets=_RECONCILE_BUCKETS, registry=r)

        # --- client-go workqueue --------------------------------------------------------
        self.workqueue_depth = Gauge(
            "workqueue_depth", "Current depth of workqueue.", ["name"], registry=r)
        self.workqueue_adds_total = Counter(
            "workqueue_adds_total", "Total number of adds handled by workqueue.",
            ["name"], registry=r)
        self.workqueue_retries_total = Counter(
            "workqueue_retries_total", "Total number of retries handled by workqueue.",
            ["name"], registry=r)
        self.workqueue_queue_duration_seconds = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested.",
            ["name"], buckets=_WORKQUEUE_BUCKETS, registry=r)
        self.workqueue_work_duration_seconds = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            ["name"], buckets=_WORKQUEUE_BUCKETS, registry=r)

        # --- client-go rest client and leader election ------------------------------------
        self.rest_client_requests_total = Counter(
            "rest_client_requests_total",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"], registry=r)
        self.leader_election_master_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, "
            "0 indicates backup, 1 indicates master.",
            ["name"], registry=r)

        # --- federation facts -------------------------------------------------------------
        self.cluster_state = Gauge(
            "federationd_cluster_state",
            "1 for the state each cluster is in, 0 for the others.",
            ["cluster", "state"], registry=r)
        self.gateway_addresses = Gauge(
            "federationd_gateway_addresses",
            "Number of gateway addresses known for each cluster's network.",
            ["cluster"], registry=r)
        self.events_appended_total = Counter(
            "federationd_events_appended_total",
            "Events appended to the log, by event type.", ["type"], registry=r)
        self.event_log_head = Gauge(
            "federationd_event_log_head", "Sequence number of the last appended event.",
            registry=r)
        self.event_log_writable = Gauge(
            "federationd_event_log_writable",
            "1 while the event log takes appends; 0 while it cannot be written (full disk, "
            "size limit, I/O error), when facts wait in memory and no write to a cluster starts.",
            registry=r)
        self.event_log_held_events = Gauge(
            "federationd_event_log_held_events",
            "Events waiting in memory for the event log to take appends again.", registry=r)
        self.projection_lag_events = Gauge(
            "federationd_projection_lag_events",
            "Events appended but not yet folded into the projections.", registry=r)
        self.actuations_total = Counter(
            "federationd_actuations_total", "Writes attempted, by cluster and result.",
            ["cluster", "result"], registry=r)
        self.convergence_seconds = Histogram(
            "federationd_convergence_seconds",
            "Time from an observed fact to the write that made it effective.",
            buckets=_CONVERGENCE_BUCKETS, registry=r)
        for t in _event_types():
            self.events_appended_total.labels(type=t)

    def init_controller(self, controller: str) -> None:
        """Export ``controller``'s reconcile counters at 0 (controller-runtime does this
        when a controller starts), so its first error shows in ``rate()``."""
        for result in RECONCILE_RESULTS:
            self.reconcile_total.labels(controller=controller, result=result)
        self.reconcile_errors_total.labels(controller=controller)

    def init_actuations(self, cluster: str) -> None:
        """Export ``cluster``'s write counters at 0 for every result."""
        for result in ACTUATION_RESULTS:
            self.actuations_total.labels(cluster=cluster, result=result)

    def set_cluster_state(self, cluster: str, state: str) -> None:
        """Set ``federationd_cluster_state`` so exactly ``state`` is 1 for ``cluster``."""
        if state not in CLUSTER_STATES:
            raise ValueError(f"unknown cluster state {state!r}")
        for s in CLUSTER_STATES:
            self.cluster_state.labels(cluster=cluster, state=s).set(1 if s == state else 0)

    def set_rejected(self, clusters: Collection[str], *, connected: Collection[str]) -> None:
        """``rejected`` for each of ``clusters``: remotes whose kubeconfig is refused, so
        no connection exists to report their state. One no longer refused is forgotten
        unless it is ``connected`` now (its connection reports its state from then on)."""
        for cluster in clusters:
            self.set_cluster_state(cluster, "rejected")
        for cluster in self._rejected - set(clusters) - set(connected):
            self.forget_cluster(cluster)
        self._rejected = set(clusters)

    def forget_cluster(self, cluster: str) -> None:
        """Drop a removed cluster's series so label sets stay bounded by the live config."""
        for s in CLUSTER_STATES:
            try:
                self.cluster_state.remove(cluster, s)
            except KeyError:
                pass
        try:
            self.gateway_addresses.remove(cluster)
        except KeyError:
            pass

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


#: The process-wide registry served on ``/metrics`` unless a daemon supplies its own.
METRICS = Metrics()
