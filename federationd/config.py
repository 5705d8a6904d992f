"""The daemon's settings: one frozen object built from flags, then the environment.

Every knob ``federationd run`` has lives here, with its flag, its environment variable
(``FEDERATIOND_<NAME>``, for Deployments that prefer env over args) and its default, so
that ``--help`` and the code cannot disagree. A flag wins over the environment; the
environment wins over the default. Nothing else in the daemon reads ``os.environ``.

Secrets never pass through here: ``kubeconfig`` is a path, read by the cluster client.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields


class ConfigError(ValueError):
    """A setting has an unusable value; the message names the flag."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    #: kubeconfig file for the master cluster; empty: in-cluster service account
    kubeconfig: str = ""
    #: context in the kubeconfig (default: its current context)
    context: str = ""
    #: name of the master cluster in events, metrics and meshNetworks
    cluster_name: str = "master"
    #: the event log (SQLite file)
    log: str = "federationd.db"
    #: namespace federationd runs in: its Lease and Events live there
    namespace: str = "istio-system"
    http_host: str = "127.0.0.1"
    #: 0 picks a free port (printed on start)
    http_port: int = 8080
    leader_elect: bool = False
    lease_name: str = "federationd"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: identity in the Lease (default: hostname + pid)
    identity: str = ""
    #: save a projection snapshot every N events
    snapshot_every: int = 1000
    #: keep this many events before the newest snapshot (0: keep everything)
    retention_window: int = 0
    #: re-check every managed object this often (seconds)
    resync_period: float = 300.0
    #: reflectors' server-side watch timeout (seconds)
    watch_timeout: float = 300.0
    #: restart a watch that delivered nothing (not even a bookmark) for this long
    inactivity_timeout: float = 120.0
    #: timeout of every single API request (seconds)
    request_timeout: float = 30.0
    #: every request and watch of a cluster on one HTTP/2 connection when its API
    #: server offers it (as client-go); off: HTTP/1.1, a connection per watch
    http2: bool = True
    #: how long a leaving remote may take to have its objects deleted (seconds); an
    #: unreachable remote is then given up (a Warning Event says what was left behind)
    remote_cleanup_timeout: float = 60.0
    #: re-resolve load-balancer hostnames this often (seconds)
    resolve_period: float = 30.0
    #: an /etc/hosts-style file consulted before DNS for load-balancer hostnames
    hosts_file: str = ""
    #: log level of the daemon's own log lines
    log_level: str = "INFO"
    #: log durability: NORMAL survives a process crash, FULL also a power loss
    synchronous: str = "NORMAL"
    #: a fire drill, never for production: hold every event this many seconds before
    #: folding it, so the projection really falls behind the log (0: off)
    debug_fold_delay: float = 0.0
    #: extra flags kept for forward compatibility of tests
    extra: Mapping[str, str] = field(default_factory=dict)

    def effective_identity(self) -> str:
        return self.identity or f"{socket.gethostname()}-{os.getpid()}"


_HELP = {
    "kubeconfig": "kubeconfig of the master cluster (default: in-cluster service account)",
    "context": "kubeconfig context (default: the current context)",
    "cluster_name": "name of the master cluster in events, metrics and meshNetworks",
    "log": "event log file",
    "namespace": "namespace of the Lease and of federationd's own Events",
    "http_host": "address of /healthz, /readyz, /metrics, /debug (0.0.0.0 in a Pod)",
    "http_port": "port of the HTTP endpoints (0: any free port)",
    "leader_elect": "elect a leader through a coordination.k8s.io Lease; only it writes",
    "lease_name": "name of the Lease",
    "lease_duration": "seconds a standby waits before taking over an unrenewed Lease",
    "renew_deadline": "seconds the leader retries renewing before giving up leadership",
    "retry_period": "seconds between Lease acquire/renew attempts",
    "identity": "holder identity in the Lease (default: hostname-pid)",
    "snapshot_every": "save a projection snapshot every N events",
    "retention_window": "events kept before the newest snapshot (0: all)",
    "resync_period": "seconds between full re-checks of every managed object",
    "watch_timeout": "server-side timeout of each watch request, seconds",
    "inactivity_timeout": "restart a watch silent for this many seconds",
    "request_timeout": "timeout of each API request, seconds",
    "http2": "multiplex every request and watch of a cluster on one HTTP/2 connection when its API "
    "server offers h2, as client-go does (default: on); --no-http2 uses HTTP/1.1, a connection per "
    "watch: ~0.7 MB more memory per cluster, a little less CPU per request",
    "remote_cleanup_timeout": "seconds a leaving remote gets to have its objects deleted before it is given up",
    "resolve_period": "seconds between re-resolutions of load-balancer hostnames",
    "hosts_file": "/etc/hosts-style file consulted before DNS for gateway hostnames",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "synchronous": "event log durability: NORMAL or FULL",
    "debug_fold_delay": "fire drill, never in production: seconds each event waits before it is "
    "folded, so the projection lags the log and FederationdProjectionLagGrowing can be seen to fire "
    "(default: 0, off)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="federationd run",
        description="Run federationd against a master cluster. Every flag can also be set "
        "as FEDERATIOND_<FLAG> in the environment (e.g. FEDERATIOND_LOG).",
    )
    defaults = Settings()
    for f in fields(Settings):
        if f.name == "extra":
            continue
        default = getattr(defaults, f.name)
        help_ = _HELP.get(f.name, "")
        if isinstance(default, bool):
            p.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            # a help text that names its own default (or an empty one) gets no second
            shown = "" if "(default" in help_ or default == "" else f" (default: {default})"
            p.add_argument(_flag(f.name), dest=f.name, type=type(default), default=None, help=help_ + shown)
    return p


def _from_env(name: str, default: object, env: Mapping[str, str]) -> object:
    raw = env.get("FEDERATIOND_" + name.upper())
    if raw is None:
        return default
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"FEDERATIOND_{name.upper()}: not a number: {raw!r}") from None
    return raw


def load(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``argv`` (without the program / sub-command) and ``env``."""
    env = os.environ if env is None else env
    args = parser().parse_args(list(argv))
    defaults = Settings()
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        given = getattr(args, f.name)
        values[f.name] = given if given is not None else _from_env(f.name, getattr(defaults, f.name), env)
    s = Settings(**values)  # type: ignore[arg-type]
    _check(s)
    return s


def lease_timing_problem(*, lease_duration: float, renew_deadline: float, retry_period: float) -> str:
    """client-go's rule for leader-election timings (the one ``leader.LeaderElector``
    enforces), checked once here so a bad flag is refused at start with its name."""
    if not lease_duration > renew_deadline > retry_period * 1.2 or retry_period <= 0:
        return (
            "lease timings must satisfy --lease-duration > --renew-deadline > 1.2 * --retry-period > 0 "
            f"(got {lease_duration:g} / {renew_deadline:g} / {retry_period:g})"
        )
    return ""


def _check(s: Settings) -> None:
    if not s.log:
        raise ConfigError("--log: a path is required")
    if s.snapshot_every < 1:
        raise ConfigError("--snapshot-every must be >= 1")
    if s.debug_fold_delay < 0:
        raise ConfigError("--debug-fold-delay must be >= 0")
    if not 0 <= s.http_port <= 65535:
        raise ConfigError("--http-port must be in 0..65535")
    if s.leader_elect:
        problem = lease_timing_problem(
            lease_duration=s.lease_duration, renew_deadline=s.renew_deadline, retry_period=s.retry_period
        )
        if problem:
            raise ConfigError(problem)
    if s.synchronous not in ("NORMAL", "FULL"):
        raise ConfigError("--synchronous must be NORMAL or FULL")
    for name in ("resync_period", "watch_timeout", "inactivity_timeout", "request_timeout", "resolve_period", "remote_cleanup_timeout"):
        if getattr(s, name) <= 0:
            raise ConfigError(f"{_flag(name)} must be > 0")
