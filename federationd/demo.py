"""``federationd demo``: a simulated fleet, the real daemon, the seed workflows, a live view.

What a newcomer runs first (``make demo``). It re-enacts seed 001 on a fleet of simulated
clusters — a master and two remotes in different regions, one of them with AWS-like
hostname load balancers — and shows federationd converging it:

1. the fleet (``federationd.sim.Fleet``) is served from this process, its kubeconfigs
   written into the demo directory;
2. the CRDs are installed as ``make deploy`` would, and ``federationd run`` is started as
   a real child process against the master's kubeconfig, its log going to a file there
   (the view would be unreadable with it interleaved);
3. the seed samples (``deploy/samples``) are applied with ``kubectl`` exactly as the
   seeds show: seed 001's Istio resource (``istio-multicluster-cr.yaml``: mesh
   expansion, mTLS, control-plane security, MCP), then per remote the "cluster-add"
   step on the remote, its kubeconfig Secret on the master and the RemoteIstio named
   like it;
4. a view is drawn from what the clusters hold (components and their readiness, images,
   gateway addresses, regions), what the daemon reports (connections, ``/readyz``, its
   event log, the Istio resource's ``MeshAnalyzed`` condition) and what a user would
   type (``kubectl get istios,remoteistios -A``).

The daemon is never imported, only run and asked over HTTP; the clusters are changed only
through kubectl, as a user would, and otherwise only read. The one thing the demo plays
itself is the clouds' DNS (``SimulatedDns``): the daemon resolves the AWS-like
load-balancer hostnames through a hosts file, never through the network. On a terminal
the view refreshes in place; otherwise snapshots are appended every few seconds, without
colour codes.
``--once`` (implied when stdin is not a terminal, or ``CI`` is set) exits after
convergence: 0, or 1 with what is still pending after ``--timeout`` seconds. Ctrl-C or
SIGTERM stops the daemon, then the fleet; nothing keeps running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

from events.log import EventLog, LogError, Record
from federationd.inspect import event_line
from federationd.render.objects import MANAGED_BY, MANAGED_BY_LABEL
from federationd.sim import ClusterSpec, Fleet
from federationd.sim.store import Change

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "deploy" / "samples"
CRDS = ROOT / "deploy" / "crds"
KUBECTL = "/usr/bin/kubectl"
NAMESPACE = "istio-system"
ISTIO_API = "istio.banzaicloud.io/v1beta1"
INGRESS_GATEWAY = "istio-ingressgateway"
AVAILABLE = "Available"
#: the Istio CR's condition with what ``federationd analyze`` finds in the mesh
MESH_ANALYZED = "MeshAnalyzed"

MASTER = "master"
#: The fleet of seed 001, with the clouds' load-balancer styles: a master (a PKE cluster
#: on EC2 in the seed), a GKE-like remote (IP load balancers) and an EKS-like one
#: (hostname load balancers). Node counts as in the seed.
FLEET = (
    ClusterSpec(name=MASTER, region="eu-west-1", zones=("eu-west-1a",), lb="ip", nodes=1),
    ClusterSpec(name="remote-gke", region="europe-west4", zones=("europe-west4-a", "europe-west4-b"), lb="ip", nodes=2),
    ClusterSpec(name="remote-eks", region="us-east-1", zones=("us-east-1a", "us-east-1b"), lb="hostname", nodes=2),
)
#: remote → its RemoteIstio sample (seed 001's remoteistio-*-cr.yaml)
REMOTE_SAMPLES = {"remote-gke": "remoteistio-gke-cr.yaml", "remote-eks": "remoteistio-eks-cr.yaml"}
#: seed 001's Istio resource: gateway federation needs ``meshExpansion`` (the
#: cluster-aware-gateway meshNetworks points at), with mTLS, control-plane security and MCP
ISTIO_SAMPLE = "istio-multicluster-cr.yaml"
CLUSTER_ADD = "cluster-add"

DAEMON_LOG = "federationd.log"
EVENT_LOG = "events.db"
HOSTS_FILE = "hosts"
#: Seconds between looks at the fleet and the daemon while the view is up.
POLL = 0.5
#: Event types that record the daemon's own writes (the rest are facts it observed).
WRITES = frozenset({"ActuationApplied", "ActuationFailed"})
#: Ctrl-C, kill, and a closed terminal all stop everything cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The daemon's first stdout line names its HTTP address.
SERVING = "federationd: serving on "


# --- errors ----------------------------------------------------------------------------------------



def federationd_command() -> str:
    """How to run ``federationd`` from where the user stands, as printed commands must
    work as printed: ``federationd`` when that is on PATH and is this installation, else
    the script of this installation (``.venv/bin/federationd`` after ``make demo``),
    else this interpreter with ``-m federationd.cli``."""
    script = Path(sys.executable).parent / "federationd"
    on_path = shutil.which("federationd")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "federationd"
    if script.exists():
        try:
            shown = os.path.relpath(script)
        except ValueError:  # another drive
            shown = str(script)
        shown = shown if shown.startswith((".", "/")) and not shown.startswith("..") else str(script)
        return shlex.quote(shown)
    return f"{shlex.quote(sys.executable)} -m federationd.cli"

class DemoError(Exception):
    """Why the demo could not go on, in one paragraph a user can act on."""


class KubectlFailed(DemoError):
    pass


class DaemonFailed(DemoError):
    pass


class NotConverged(DemoError):
    pass


# --- output ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Style:
    """ANSI styling, all of it empty unless stdout is a terminal (and NO_COLOR unset)."""

    on: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def wait(self, text: str) -> str:
        return self._wrap("33", text)

    def bad(self, text: str) -> str:
        return self._wrap("31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


class Console:
    """Where the demo writes: in place on a terminal, appended otherwise.

    On a terminal the view is redrawn over its previous frame (cursor up, rewrite, clear
    the rest), so what was printed before it — the commands run — stays readable above.
    That needs every line to take exactly one row: lines are clipped to the width and
    the frame to the height (keeping its end, where the verdict is)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.style = Style(self.tty and not os.environ.get("NO_COLOR"))
        self._height = 0

    @property
    def width(self) -> int:
        return shutil.get_terminal_size((120, 40)).columns if self.tty else 120

    @property
    def rows(self) -> int:
        return shutil.get_terminal_size((120, 40)).lines if self.tty else 10_000

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self._height = 0  # whatever is below the view now belongs to the scrollback

    def draw(self, text: str) -> None:
        """Replace the previous view on a terminal; append it elsewhere."""
        if not self.tty:
            self.stream.write(text + "\n")
            self.stream.flush()
            return
        width, rows = self.width, self.rows
        lines = [_clip_visible(ln, width - 1) for ln in text.split("\n")]
        if len(lines) > rows - 1:
            lines = lines[len(lines) - (rows - 1):]
        up = f"\x1b[{self._height}F" if self._height else "\r"
        self.stream.write(up + "".join(ln + "\x1b[K\n" for ln in lines) + "\x1b[J")
        self.stream.flush()
        self._height = len(lines)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def _clip_visible(text: str, width: int) -> str:
    """``text`` cut to ``width`` visible characters, colour codes kept intact."""
    if _visible_len(text) <= width:
        return text
    out, n, i = [], 0, 0
    while i < len(text) and n < width - 1:
        m = _ANSI.match(text, i)
        if m:
            out.append(m.group())
            i = m.end()
            continue
        out.append(text[i])
        n += 1
        i += 1
    return "".join(out) + "…\x1b[0m" if "\x1b[" in text else "".join(out) + "…"


# --- child processes -------------------------------------------------------------------------------


@dataclasses.dataclass
class Kubectl:
    """kubectl as the seeds run it: KUBECONFIG set to the fleet's merged kubeconfig."""

    kubeconfig: Path
    console: Console
    echo: bool = True

    async def __call__(self, *args: str, stdin: str | None = None, quiet: bool = False) -> str:
        if self.echo and not quiet:
            self.console.line(self.console.style.dim("$ kubectl " + " ".join(shlex.quote(a) for a in args)))
        proc = await asyncio.create_subprocess_exec(
            KUBECTL, *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), 30)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise KubectlFailed(f"kubectl {' '.join(args)} failed (exit {proc.returncode}): {err.decode().strip()}")
        text = out.decode()
        if self.echo and not quiet and text.strip():
            for ln in text.rstrip().splitlines():
                self.console.line("  " + ln)
        return text


class Daemon:
    """``federationd run`` as a child process; its stdout and stderr go to one file."""

    def __init__(self, *, directory: Path, kubeconfig: Path) -> None:
        self.log_path = directory / DAEMON_LOG
        self.event_log = directory / EVENT_LOG
        self.hosts_file = directory / HOSTS_FILE
        self.kubeconfig = kubeconfig
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._file: IO[bytes] | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def args(self) -> list[str]:
        return [
            "run",
            "--kubeconfig", str(self.kubeconfig),
            "--context", MASTER,
            "--cluster-name", MASTER,
            "--log", str(self.event_log),
            "--namespace", NAMESPACE,
            "--http-port", "0",
            "--hosts-file", str(self.hosts_file),
            "--log-level", "INFO",
        ]

    async def start(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a deadline for the child's start
        self._file = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "federationd.cli", *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._file,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # its own process group: a Ctrl-C on the terminal reaches only the demo, which
            # stops the daemon (SIGTERM, then waits) before the fleet it talks to
            process_group=0,
        )
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        deadline = time.monotonic() + timeout
        while not self.url:
            try:
                line = await asyncio.wait_for(stdout.readline(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                raise DaemonFailed(f"the daemon did not start serving within {timeout:.0f} s; see {self.log_path}") from None
            if not line:
                code = await self.proc.wait()
                raise DaemonFailed(f"the daemon exited with code {code} before serving: {self.last_lines()}")
            self._write(line)
            text = line.decode(errors="replace").strip()
            if text.startswith(SERVING):
                self.url = text[len(SERVING):].strip()
        self._drain = asyncio.create_task(self._copy(stdout), name="daemon-stdout")

    def _write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
            self._file.flush()

    async def _copy(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self._write(line)

    def last_lines(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        tail = [ln for ln in lines if ln.strip()][-n:]
        return ("\n    " + "\n    ".join(tail)) if tail else f"(empty log {self.log_path})"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, *, timeout: float = 20.0) -> int | None:  # noqa: ASYNC109 - a deadline for the child's exit
        """SIGTERM (the daemon's clean stop), then SIGKILL after ``timeout``."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.wait_for(self.proc.wait(), timeout)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    code = await self.proc.wait()
            else:
                code = self.proc.returncode
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 5)
            self._drain = None
        if self._file is not None:
            self._file.close()
            self._file = None
        return code


class SimulatedDns:
    """The simulated clouds' DNS: an /etc/hosts-style file the daemon reads (``--hosts-file``).

    A cloud load balancer with a hostname (AWS-like) must resolve to addresses, and the
    demo must never ask real DNS about simulated names. So the moment a simulated cluster
    gives a Service a load-balancer hostname, two addresses are written for it here — from
    the store's change listener, synchronously, before the change can reach the daemon
    through a watch: the daemon never meets a simulated hostname missing from the file.
    """

    def __init__(self, fleet: Fleet, path: Path) -> None:
        self.path = path
        self.entries: dict[str, tuple[str, ...]] = {}
        self.error = ""
        self._write()
        for cluster in fleet:
            cluster.store.listeners.append(self._listener(cluster.index))

    def _listener(self, index: int) -> Callable[[Change], None]:
        def on_change(ch: Change) -> None:
            if ch.resource != ("", "services") or ch.type == "DELETED":
                return
            ingress = ((ch.obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            for entry in ingress:
                host = str(entry.get("hostname") or "").lower()
                if host and host not in self.entries:
                    n = len(self.entries) + 1
                    # two addresses per load balancer, as an AWS ELB has (one per zone)
                    self.entries[host] = (f"52.{16 + index}.{n}.10", f"52.{16 + index}.{n}.20")
                    self._write()

        return on_change

    def _write(self) -> None:
        lines = ["# load-balancer hostnames of the simulated fleet (written by federationd demo)"]
        lines += [f"{ip} {host}" for host, ips in self.entries.items() for ip in ips]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        except OSError as e:
            # a listener must not fail the store's write; the view reports it instead
            self.error = f"cannot write {self.path}: {e.strerror}"


# --- what the view shows ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    kind: str
    ready: int
    desired: int
    images: tuple[str, ...]
    #: the status describes the newest spec (not the replicas of an older one)
    current: bool = True

    @property
    def ok(self) -> bool:
        return self.current and self.desired > 0 and self.ready >= self.desired


@dataclasses.dataclass(frozen=True)
class Gateway:
    address: str  # an IP or a hostname, "" while the cloud has not assigned one
    resolved: tuple[str, ...] = ()
    resolve_error: str = ""

    @property
    def reachable_at(self) -> tuple[str, ...]:
        """The IPs other networks can use (a hostname only once resolved)."""
        if not self.address:
            return ()
        if _is_ip(self.address):
            return (self.address,)
        return self.resolved


@dataclasses.dataclass(frozen=True)
class ClusterView:
    name: str
    role: str
    region: str
    zones: tuple[str, ...]
    lb: str
    connection: str
    reason: str
    gateway: Gateway | None
    components: tuple[Component, ...]
    status: str  # of its CR: the Istio on the master, the RemoteIstio on a remote
    error: str
    cr_gateways: tuple[str, ...]
    #: Pods in the Istio namespace: (Running, Ready, all)
    pods: tuple[int, int, int] = (0, 0, 0)
    #: the Istio CR's ``MeshAnalyzed`` condition (status, reason, message); master only
    analyzed: tuple[str, str, str] | None = None

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted({_tag(i) for c in self.components for i in c.images if _tag(i)}))

    @property
    def hubs(self) -> tuple[str, ...]:
        return tuple(sorted({i.rsplit("/", 1)[0] for c in self.components for i in c.images if "/" in i}))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    at: float
    clusters: tuple[ClusterView, ...]
    ready: bool
    ready_reason: str
    converged_report: dict[str, Any]
    head: int
    events: tuple[str, ...]
    counts: dict[str, int]
    kubectl_get: str
    #: meshNetworks of the master's ``istio`` ConfigMap: network → (registries, gateways)
    networks: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = dataclasses.field(default_factory=dict)
    dns_error: str = ""
    #: simulated hostname → the hosts file that lists it
    hosts: dict[str, str] = dataclasses.field(default_factory=dict)

    def pending(self) -> list[str]:
        """What stands between now and "everything is Available", in words."""
        out: list[str] = []
        if not self.ready:
            out.append(f"daemon not ready (/readyz: {self.ready_reason or 'no answer'})")
        for c in self.clusters:
            if c.connection != "connected":
                why = f": {c.reason}" if c.reason else ""
                out.append(f"{c.name}: connection {c.connection}{why}")
            if not c.components:
                out.append(f"{c.name}: no Istio components yet")
            for comp in c.components:
                if not comp.ok:
                    stale = "" if comp.current else " (status of an older spec)"
                    out.append(f"{c.name}: {comp.kind} {comp.name} ready {comp.ready}/{comp.desired}{stale}")
            if c.gateway is None or not c.gateway.address:
                out.append(f"{c.name}: ingress gateway has no load-balancer address yet")
            elif not c.gateway.reachable_at:
                why = c.gateway.resolve_error or "no resolution of the hostname recorded by the daemon"
                if c.gateway.resolve_error and c.gateway.address in self.hosts:
                    # the answer was in the hosts file the daemon was given: say so
                    why += f", although {self.hosts[c.gateway.address]} lists it: see the daemon's log"
                out.append(f"{c.name}: gateway hostname {c.gateway.address} pending ({why})")
            kind = "Istio" if c.role == "master" else "RemoteIstio"
            if c.status != AVAILABLE:
                err = f" ({c.error})" if c.error else ""
                out.append(f"{c.name}: {kind} status {c.status or '(none yet)'}{err}")
            elif not c.cr_gateways:
                out.append(f"{c.name}: {kind} status has no GATEWAYS yet")
            if c.role == "master" and c.analyzed is None:
                out.append(f"{c.name}: Istio status has no {MESH_ANALYZED} condition yet")
        for c in self.clusters:
            net = self.networks.get(c.name)
            if net is None:
                out.append(f"meshNetworks: no network for {c.name} yet")
            elif not net[1]:
                out.append(f"meshNetworks: network {c.name} has no gateway yet")
        if self.dns_error:
            out.append(f"simulated DNS: {self.dns_error}")
        report = self.converged_report
        if report:
            if not report.get("leader"):
                out.append("daemon is not leading")
            for name, ok in sorted((report.get("clusters") or {}).items()):
                if not ok:
                    out.append(f"{name}: daemon still has writes in flight")
            if not report.get("status", True):
                out.append("daemon still writing CR statuses")
        else:
            out.append("daemon /debug/converged: no answer")
        return out

    @property
    def converged(self) -> bool:
        return not self.pending()


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def _images(obj: dict[str, Any]) -> tuple[str, ...]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    return tuple(str(c.get("image", "")) for c in containers if c.get("image"))


def components(fleet: Fleet, cluster: str) -> tuple[Component, ...]:
    """Deployments and DaemonSets federationd manages on ``cluster``, with readiness."""
    store = fleet[cluster].store
    out: list[Component] = []
    for kind in ("Deployment", "DaemonSet"):
        for o in store.list("apps/v1", kind):
            labels = (o.get("metadata") or {}).get("labels") or {}
            if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
                continue
            st = o.get("status") or {}
            if kind == "DaemonSet":
                ready, desired = int(st.get("numberReady") or 0), int(st.get("desiredNumberScheduled") or 0)
            else:
                ready = int(st.get("readyReplicas") or 0)
                replicas = (o.get("spec") or {}).get("replicas")
                desired = 1 if replicas is None else int(replicas)
            meta = o["metadata"]
            current = int(st.get("observedGeneration") or 0) >= int(meta.get("generation") or 1)
            out.append(Component(meta["name"], kind, ready, desired, _images(o), current=current))
    return tuple(sorted(out, key=lambda c: c.name))


def mesh_analyzed(cr: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """The ``MeshAnalyzed`` condition of an Istio CR as (status, reason, message), or
    None while the daemon has not reported one for the CR's current generation."""
    meta = (cr or {}).get("metadata") or {}
    for cond in ((cr or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") != MESH_ANALYZED:
            continue
        seen = cond.get("observedGeneration")
        if seen is not None and int(seen) < int(meta.get("generation") or 1):
            return None
        return str(cond.get("status") or ""), str(cond.get("reason") or ""), str(cond.get("message") or "")
    return None


def pods(fleet: Fleet, cluster: str) -> tuple[int, int, int]:
    """The Pods the cluster runs in the Istio namespace: (Running, Ready, all)."""
    running = ready = total = 0
    for p in fleet[cluster].store.list("v1", "Pod", NAMESPACE):
        st = p.get("status") or {}
        total += 1
        running += st.get("phase") == "Running"
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    return running, ready, total


def gateway(fleet: Fleet, cluster: str, resolutions: dict[str, Any]) -> Gateway | None:
    svc = fleet[cluster].store.get("v1", "Service", INGRESS_GATEWAY, NAMESPACE)
    if svc is None:
        return None
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress:
        return Gateway(address="")
    addr = str(ingress[0].get("ip") or ingress[0].get("hostname") or "")
    res = resolutions.get(addr) or {}
    return Gateway(address=addr, resolved=tuple(res.get("ips") or ()), resolve_error=str(res.get("error") or ""))


def mesh_networks(fleet: Fleet) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The networks federationd announced in the master's mesh config: network →
    (registries its endpoints come from, gateway ``address:port``)."""
    cm = fleet[MASTER].store.get("v1", "ConfigMap", "istio", NAMESPACE)
    text = ((cm or {}).get("data") or {}).get("meshNetworks") or ""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    networks = doc.get("networks") if isinstance(doc, dict) else None
    for name, net in (networks or {}).items():
        net = net or {}
        registries = tuple(str(e.get("fromRegistry")) for e in net.get("endpoints") or () if e.get("fromRegistry"))
        gateways = tuple(f"{g.get('address')}:{g.get('port')}" for g in net.get("gateways") or () if g.get("address"))
        out[str(name)] = (registries, gateways)
    return out


# --- the demo ----------------------------------------------------------------------------------------


class Demo:
    """One run of the demo: set up (fleet, CRDs, daemon, samples), watch, tear down.

    ``run`` owns every resource it starts and stops them in reverse order whatever
    happens — a failure, Ctrl-C in the middle of setting up, or the end of ``--once``."""

    def __init__(self, *, directory: Path, once: bool, timeout: float, interval: float, console: Console) -> None:
        self.directory = directory
        self.once = once
        self.timeout = timeout
        self.interval = interval
        self.console = console
        self.style = console.style
        self.stop = asyncio.Event()
        self.fleet: Fleet | None = None
        self.dns: SimulatedDns | None = None
        self.daemon: Daemon | None = None
        self.kubectl: Kubectl | None = None
        self.session: aiohttp.ClientSession | None = None
        self.events: EventLog | None = None
        #: the newest facts (what the daemon saw), and how many events of each type
        self._recent: deque[str] = deque(maxlen=6)
        self._counts: Counter[str] = Counter()
        self._next_seq = 1
        self.started = time.monotonic()
        self.applied_at: float | None = None
        self.converged_at: float | None = None
        self._watching = False

    # -- setting up --------------------------------------------------------------------------------

    async def _start_fleet(self) -> Fleet:
        fleet = Fleet(list(FLEET), directory=self.directory / "fleet")
        await fleet.start()
        self.fleet = fleet
        s = self.style
        self.console.line(s.bold("Simulated fleet") + f" (kubeconfigs in {fleet.directory})")
        for spec in FLEET:
            c = fleet[spec.name]
            role = "master" if spec.name == MASTER else "remote"
            self.console.line(
                f"  {spec.name:<11} {role:<6}  {spec.region:<13} {spec.lb:<8} load balancers  {c.url}"
            )
        self.console.line(f"  merged kubeconfig (a context per cluster): {fleet.merged_kubeconfig_path}")
        self.dns = SimulatedDns(fleet, self.directory / HOSTS_FILE)
        self.console.line(f"  the clouds' DNS for load-balancer hostnames: {self.dns.path} (the daemon's --hosts-file)")
        self.console.line()
        return fleet

    async def _deploy(self, kubectl: Kubectl) -> None:
        """What ``make deploy`` does in the seeds: the CRDs and the operator's namespace."""
        self.console.line(self.style.bold("Install the CRDs on the master (as `make deploy` does in the seeds)"))
        await kubectl("--context", MASTER, "apply", "-f", _rel(CRDS))
        await kubectl("--context", MASTER, "create", "namespace", NAMESPACE)
        self.console.line()

    async def _start_daemon(self, fleet: Fleet) -> Daemon:
        d = Daemon(directory=self.directory, kubeconfig=fleet[MASTER].kubeconfig_path)
        self.daemon = d
        self.console.line(self.style.bold("Start the daemon against the master"))
        self.console.line(self.style.dim("$ " + " ".join([federationd_command(), *(shlex.quote(a) for a in d.args)])))
        await d.start()
        self.console.line(f"  pid {d.pid}, serving {d.url} (/readyz /metrics /debug/)")
        self.console.line(f"  its log: {d.log_path}")
        self.console.line(f"  its event log: {d.event_log}")
        self.console.line()
        return d

    async def _apply_samples(self, kubectl: Kubectl, fleet: Fleet) -> None:
        s = self.style
        self.console.line(s.bold("Seed 001: the Istio resource for gateway federation on the master"))
        await kubectl("--context", MASTER, "-n", NAMESPACE, "create", "-f", _rel(SAMPLES / ISTIO_SAMPLE))
        self.applied_at = time.monotonic()
        for remote, sample in REMOTE_SAMPLES.items():
            self.console.line()
            self.console.line(s.bold(f"Seed 001: add {remote} to the mesh"))
            await kubectl("--context", remote, "apply", "-f", _rel(SAMPLES / CLUSTER_ADD))
            kc = fleet[remote].kubeconfig_path
            self.console.line(s.dim(
                f"  (the simulated clusters issue no service-account tokens: {kc.name}, written by the fleet,"
                " stands in for the kubeconfig generate-kubeconfig.sh would make)"
            ))
            await kubectl(
                "--context", MASTER, "-n", NAMESPACE, "create", "secret", "generic", remote,
                f"--from-file={remote}={kc}",
            )
            await kubectl("--context", MASTER, "create", "-n", NAMESPACE, "-f", _rel(SAMPLES / sample))
        self.console.line()

    # -- observing ---------------------------------------------------------------------------------

    async def _http(self, path: str) -> tuple[int, str]:
        assert self.session is not None and self.daemon is not None
        try:
            async with self.session.get(self.daemon.url + path, timeout=aiohttp.ClientTimeout(total=3)) as r:
                return r.status, await r.text()
        except (aiohttp.ClientError, TimeoutError) as e:
            return 0, type(e).__name__

    async def _json(self, path: str) -> dict[str, Any]:
        status, body = await self._http(path)
        if status != 200:
            return {}
        with contextlib.suppress(ValueError):
            out = json.loads(body)
            if isinstance(out, dict):
                return out
        return {}

    async def _read_events(self) -> int:
        """New records of the daemon's event log → the recent lines; returns the head."""
        assert self.daemon is not None
        if self.events is None:
            if not self.daemon.event_log.exists():
                return 0
            try:
                self.events = await EventLog.open(self.daemon.event_log)
            except LogError:
                return 0
        rec: Record | None = None
        with contextlib.suppress(LogError):
            async for rec in self.events.read(self._next_seq):
                kind = type(rec.event).__name__
                self._counts[kind] += 1
                # writes are counted, not listed: they outnumber the facts that caused them
                if kind not in WRITES:
                    self._recent.append(event_line(rec))
        if rec is not None:
            self._next_seq = rec.seq + 1
        return self._next_seq - 1

    async def kubectl_get(self) -> str:
        """``kubectl get istios,remoteistios -A`` on the master, as the seeds show it."""
        assert self.kubectl is not None
        try:
            return await self.kubectl("get", "istios,remoteistios", "-A", "--context", MASTER, quiet=True)
        except DemoError as e:
            return str(e)

    async def snapshot(self) -> Snapshot:
        """Everything the view shows but the kubectl output (a child process per look is
        too dear for the fast convergence check; ``kubectl_get`` adds it when drawn)."""
        fleet = self.fleet
        assert fleet is not None
        status, body = await self._http("/readyz")
        state = await self._json("/debug/state")
        report = await self._json("/debug/converged")
        head = await self._read_events()
        known = state.get("clusters") or {}
        resolutions = state.get("resolutions") or {}
        views = []
        master_store = fleet[MASTER].store
        for spec in FLEET:
            name = spec.name
            c = known.get(name) or {}
            if name == MASTER:
                crs = master_store.list(ISTIO_API, "Istio", NAMESPACE)
                cr = crs[0] if crs else None
            else:
                cr = master_store.get(ISTIO_API, "RemoteIstio", name, NAMESPACE)
            st = (cr or {}).get("status") or {}
            views.append(
                ClusterView(
                    name=name,
                    role="master" if name == MASTER else "remote",
                    region=spec.region,
                    zones=spec.zones,
                    lb=spec.lb,
                    connection=str(c.get("state") or "not joined"),
                    reason=str(c.get("reason") or ""),
                    gateway=gateway(fleet, name, resolutions.get(name) or {}),
                    components=components(fleet, name),
                    status=str(st.get("Status") or ""),
                    error=str(st.get("ErrorMessage") or ""),
                    cr_gateways=tuple(st.get("GatewayAddress") or ()),
                    pods=pods(fleet, name),
                    analyzed=mesh_analyzed(cr) if name == MASTER else None,
                )
            )
        return Snapshot(
            networks=mesh_networks(fleet),
            dns_error=self.dns.error if self.dns is not None else "",
            hosts={h: str(self.dns.path) for h in self.dns.entries} if self.dns is not None else {},
            at=time.monotonic(),
            clusters=tuple(views),
            ready=status == 200,
            ready_reason=body.strip() if status != 200 else "ok",
            converged_report=report,
            head=head,
            events=tuple(self._recent),
            counts=dict(self._counts),
            kubectl_get="",
        )

    # -- drawing -----------------------------------------------------------------------------------

    def render(self, snap: Snapshot, *, events: int = 6) -> str:
        s, width = self.style, self.console.width
        d = self.daemon
        assert d is not None
        lines: list[str] = []
        since = snap.at - (self.applied_at or self.started)
        lines.append(
            s.bold("federationd demo")
            + f"  ·  {time.strftime('%H:%M:%S')}  ·  {since:.1f} s since the Istio resource was applied"
        )
        lines.append(s.dim(
            "one Istio mesh over three simulated clusters: the master runs the control plane, "
            "each remote joins through its kubeconfig Secret and RemoteIstio (seed 001)"
        ))
        ready = s.good("ready") if snap.ready else s.wait(f"not ready ({snap.ready_reason})")
        leader = "leader" if snap.converged_report.get("leader") else "not leading"
        lines.append(f"daemon  pid {d.pid}  {d.url}  /readyz: {ready}  {leader}  event log head {snap.head}")
        lines.append(f"        log {d.log_path}")
        lines.append("")
        header = f"{'CLUSTER':<11} {'ROLE':<6} {'REGION / ZONES':<19} {'CONNECTION':<11} INGRESS GATEWAY"
        lines.append(s.bold(header))
        for c in snap.clusters:
            conn = (s.good if c.connection == "connected" else s.wait)(f"{c.connection:<11}")
            where = f"{c.region} {','.join(z.removeprefix(c.region).lstrip('-') for z in c.zones)}"
            lines.append(f"{c.name:<11} {c.role:<6} {where:<19} {conn} {self._gateway(c)}")
        lines.append("")
        for c in snap.clusters:
            kind = "Istio" if c.role == "master" else "RemoteIstio"
            status = c.status or "(no status yet)"
            st = (s.good if status == AVAILABLE else s.wait)(status)
            version = ", ".join(c.versions) or "-"
            hubs = ", ".join(f"{h}/*" for h in c.hubs) or "-"
            lines.append(f"{s.bold(c.name)}  {kind} {st}  Istio {version}  images {hubs}")
            if c.error:
                lines.append("  " + s.bad("error: " + c.error))
            tokens = [
                (s.good if comp.ok else s.wait)(f"{comp.name} {comp.ready}/{comp.desired}")
                + ("" if comp.kind == "Deployment" else " (ds)")
                for comp in c.components
            ]
            lines.extend(_wrap(tokens or [s.dim("no components yet")], width=width, indent="  "))
            running, ready_pods, pod_count = c.pods
            line = f"pods in {NAMESPACE}: {running} Running, {ready_pods} ready of {pod_count}"
            lines.append("  " + (s.good if pod_count and ready_pods == pod_count else s.wait)(line))
            if c.role == "master":
                lines.extend(self._analyzed(c.analyzed, width=width))
        lines.append("")
        lines.append(s.bold(f"meshNetworks (ConfigMap {NAMESPACE}/istio on the master: one network per cluster)"))
        for name, (registries, gateways) in sorted(snap.networks.items()):
            gws = ", ".join(gateways) or s.wait("no gateway yet")
            lines.append(f"  {name:<11} endpoints from {','.join(registries) or '-':<11} gateways {gws}")
        if not snap.networks:
            lines.append("  " + s.wait("(none yet)"))
        lines.append("")
        applied, failed = snap.counts.get("ActuationApplied", 0), snap.counts.get("ActuationFailed", 0)
        facts = sum(snap.counts.values()) - applied - failed
        lines.append(
            s.bold("event log") + f"  head {snap.head}: {facts} facts observed, {applied} actuations applied, "
            + (s.bad(f"{failed} failed") if failed else "0 failed") + s.dim("  (newest facts:)")
        )
        for ev_line in snap.events[-events:] if events > 0 else ():
            lines.append("  " + _clip(ev_line, width - 2))
        if not snap.events:
            lines.append("  " + s.dim("(empty)"))
        lines.append("")
        lines.append(s.bold(f"$ kubectl --context {MASTER} get istios,remoteistios -A"))
        lines.extend(snap.kubectl_get.splitlines())
        lines.append("")
        if snap.converged:
            at = self.converged_at or snap.at
            took, total = at - (self.applied_at or self.started), at - self.started
            lines.append(s.good(s.bold(
                f"converged: every cluster connected, every resource {AVAILABLE}, in {took:.1f} s"
            )))
            lines.append(f"  ({took:.1f} s from applying the Istio resource, {total:.1f} s from the start of the demo)")
            if self.console.tty and not self.once:
                lines.append(s.dim("live view; Ctrl-C stops the daemon and the fleet"))
        else:
            pending = snap.pending()
            lines.append(s.wait(f"waiting for {len(pending)} thing(s):"))
            lines.extend("  - " + p for p in pending[:12])
            if len(pending) > 12:
                lines.append(f"  … and {len(pending) - 12} more")
        return "\n".join(lines)

    def _analyzed(self, analyzed: tuple[str, str, str] | None, *, width: int) -> list[str]:
        """The ``MeshAnalyzed`` line: one line when clean, else the findings (a few)."""
        s = self.style
        if analyzed is None:
            return ["  " + s.wait(f"{MESH_ANALYZED}: (not reported yet)")]
        status, reason, message = analyzed
        head = f"{MESH_ANALYZED}: {status} ({reason})"
        if status == "True":
            # notes (never errors or warnings) may still be listed under NoFindings
            notes = [ln for ln in message.splitlines() if ln.startswith("info ")]
            said = f"{len(notes)} note(s); `federationd analyze --log` lists them" if notes else "every check passed"
            return ["  " + s.good(_clip(f"{head}: {said}", width - 2))]
        found = [ln for ln in message.splitlines() if ln.strip()]
        lines = ["  " + s.bad(f"{head}: {len(found)} finding(s); `federationd analyze --log` explains each")]
        lines.extend("    " + _clip(ln, width - 4) for ln in found[:3])
        if len(found) > 3:
            lines.append(f"    … and {len(found) - 3} more")
        return lines

    def _gateway(self, c: ClusterView) -> str:
        s = self.style
        g = c.gateway
        if g is None:
            return s.wait("no gateway Service yet")
        if not g.address:
            return s.wait("pending (no load-balancer address yet)")
        if _is_ip(g.address):
            return s.good(g.address)
        if g.resolved:
            return s.good(f"{g.address} → {', '.join(g.resolved)}")
        why = g.resolve_error or "not resolved"
        return s.wait(f"{g.address} → pending ({why})")

    # -- running -----------------------------------------------------------------------------------

    async def run(self) -> int:
        """The whole demo; always leaves nothing running, whatever happened."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop.set)
        main = asyncio.create_task(self._run(), name="demo")
        stopper = asyncio.create_task(self.stop.wait(), name="demo-stop")
        code = 1
        try:
            await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not main.done() and not self._watching:
                # interrupted while setting up: abandon the step in flight (a kubectl
                # child is killed by its wrapper; the fleet and daemon are stopped below)
                main.cancel()
            try:
                code = await main
            except asyncio.CancelledError:
                self.console.line()
                self.console.line("interrupted before the fleet converged")
                code = 130
            except DemoError as e:
                self.console.line()
                if self.stop.is_set():
                    # Ctrl-C also reaches kubectl and the daemon (same process group)
                    self.console.line(f"interrupted ({e})")
                    code = 130
                else:
                    self.console.line(self.style.bad(f"federationd demo: {e}"))
                    code = 1
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
            await self._shutdown()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        return code

    async def _run(self) -> int:
        self.console.line(self.style.bold("federationd demo") + f": everything lives in {self.directory}")
        self.console.line()
        fleet = await self._start_fleet()
        self.kubectl = Kubectl(fleet.merged_kubeconfig_path, self.console)
        self.console.line(self.style.dim(f"$ export KUBECONFIG={fleet.merged_kubeconfig_path}"))
        await self._deploy(self.kubectl)
        await self._start_daemon(fleet)
        self.session = aiohttp.ClientSession()
        await self._apply_samples(self.kubectl, fleet)
        self._watching = True
        return await self._watch()

    def _frame(self, snap: Snapshot) -> str:
        text = self.render(snap)
        overflow = text.count("\n") + 2 - self.console.rows
        if overflow > 0:
            # a small terminal: fewer event lines first (the frame is clipped after that)
            text = self.render(snap, events=6 - overflow)
        return text

    async def _watch(self) -> int:
        """Look every ``POLL`` seconds (so the convergence time is measured to that), and
        draw: on a terminal every second; otherwise every ``interval`` until converged,
        then whenever convergence is lost or regained."""
        d = self.daemon
        assert d is not None
        deadline = (self.applied_at or time.monotonic()) + self.timeout
        every = 1.0 if self.console.tty else self.interval
        last_draw = -math.inf
        was_converged = False
        while not self.stop.is_set():
            if not d.running:
                code = d.proc.returncode if d.proc is not None else None
                raise DaemonFailed(f"the daemon exited (code {code}): {d.last_lines()}")
            snap = await self.snapshot()
            now = time.monotonic()
            if snap.converged and self.converged_at is None:
                self.converged_at = now
            flipped = snap.converged != was_converged
            was_converged = snap.converged
            late = self.converged_at is None and now > deadline
            due = now - last_draw >= every and (self.console.tty or not snap.converged)
            if flipped or due or late:
                snap = dataclasses.replace(snap, kubectl_get=(await self.kubectl_get()).rstrip())
                self.console.draw(self._frame(snap) + ("" if self.console.tty else "\n"))
                last_draw = now
            if snap.converged and self.once:
                return 0
            if late:
                raise NotConverged(
                    f"not converged {self.timeout:.0f} s after the Istio resource was applied; still pending:\n  - "
                    + "\n  - ".join(snap.pending())
                    + f"\nlast lines of the daemon's log ({d.log_path}):{d.last_lines(8)}"
                )
            if flipped and snap.converged and not self.console.tty:
                self.console.line("(still running: Ctrl-C stops the daemon and the fleet)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), POLL)
        self.console.line()
        self.console.line("stopping …")
        return 0

    async def _shutdown(self) -> None:
        d, fleet = self.daemon, self.fleet
        if self.events is not None:
            with contextlib.suppress(LogError):
                await self.events.close()
            self.events = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        code: int | None = None
        if d is not None:
            code = await d.stop()
        if fleet is not None:
            await fleet.stop()
        self.console.line()
        if d is not None:
            self.console.line(f"daemon stopped (exit code {code}); fleet stopped; nothing is left running.")
            self.console.line(f"The daemon's log:  {d.log_path}")
            if d.event_log.exists():
                log = shlex.quote(str(d.event_log))
                fd = federationd_command()
                self.console.line(f"The event log:     {d.event_log}  — everything it saw, decided and did. Try:")
                self.console.line(f"  {fd} events --log {log} | less")
                self.console.line(f"  {fd} events --log {log} --type GatewayAddressesObserved --type HostnameResolved")
                self.console.line(f"  {fd} replay --log {log} --cluster remote-eks")
                self.console.line(f"  {fd} state --log {log}")
                self.console.line(f"  {fd} analyze --log {log}")
                self.console.line(f"  {fd} explain --log {log} {MASTER} ConfigMap/{NAMESPACE}/istio")
                self.console.line(f"  {fd} explain --log {log} remote-gke Deployment/{NAMESPACE}/istio-citadel")
        elif fleet is not None:
            self.console.line("fleet stopped; nothing is left running.")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _wrap(tokens: Iterable[str], *, width: int, indent: str) -> list[str]:
    lines: list[str] = []
    cur, cur_len = indent, len(indent)
    for t in tokens:
        n = _visible_len(t)
        if cur_len > len(indent) and cur_len + 3 + n > width:
            lines.append(cur)
            cur, cur_len = indent, len(indent)
        if cur_len > len(indent):
            cur += "   "
            cur_len += 3
        cur += t
        cur_len += n
    if cur_len > len(indent):
        lines.append(cur)
    return lines


# --- entry point -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="federationd demo",
        description="Start a simulated fleet (a master and two remotes in different regions, one "
        "with hostname load balancers) and the daemon, apply the seed samples with kubectl, and "
        "show the fleet converging. Ctrl-C stops everything.",
    )
    p.add_argument("--dir", type=Path, default=None, help="directory for kubeconfigs and logs (default: a new temporary one)")
    p.add_argument("--once", action="store_true", default=None, help="exit after convergence (the default when stdin is not a terminal or CI is set)")
    p.add_argument("--keep-running", dest="once", action="store_false", help="keep the live view after convergence even without a terminal")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for convergence after the Istio resource is applied (default 60)")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between appended snapshots when stdout is not a terminal (default 3)")
    return p


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is ``demo`` (as ``federationd.cli`` dispatches it)."""
    args = _parser().parse_args(list(argv[1:]))
    if not Path(KUBECTL).exists():
        print(f"federationd demo: {KUBECTL} not found; the demo applies the seed samples with kubectl", file=sys.stderr)
        return 2
    for needed in (CRDS, SAMPLES):
        if not needed.is_dir():
            print(f"federationd demo: {needed} not found (run it from a checkout of federationd)", file=sys.stderr)
            return 2
    once = args.once
    if once is None:
        once = not sys.stdin.isatty() or bool(os.environ.get("CI"))
    directory = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="federationd-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / EVENT_LOG).exists():
        print(f"federationd demo: {directory / EVENT_LOG} exists: give a new --dir (the fleet is new every time)", file=sys.stderr)
        return 2
    console = Console(sys.stdout)
    demo = Demo(directory=directory.resolve(), once=once, timeout=args.timeout, interval=args.interval, console=console)
    return asyncio.run(demo.run())


__all__ = ["Demo", "DemoError", "main"]
