"""One run of the daemon under its own identities, for the least-privilege tests.

``run`` starts a master and a remote, applies the master's RBAC (``deploy/rbac.yaml``)
and the remote's (``deploy/samples/cluster-add/``) — either as shipped or with one rule
taken out — and drives the daemon, running as those ServiceAccounts, through everything
it does to a cluster:

1. install a mesh on the master (by default the widest, every component on:
   ``everything-1.2``) and join a remote with flat-network services and injection
   namespaces (creates, applies, Secrets, Events, leader election, status, the finalizer);
2. shrink it to seed 000's minimal mesh (deletes on the master);
3. delete the RemoteIstio (the remote's cleanup: deletes there, the finalizer released).

What a user could see going wrong is collected as it happens: requests the daemon got a
403 for (``rest_client_requests_total{code="403"}``), failed writes
(``federationd_actuations_total{result="failure"}``) and a CR that is not Available at
the end. A run with a rule removed stops at the first such sign; the emulator's audit of
every request the daemon made (per identity) is returned for the full runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from federationd.sim import ClusterSpec, Fleet
from tests.daemon import identity
from tests.daemon.conftest import DaemonProcess, install_crds, start_daemon
from tests.daemon.test_e2e import SEED_000
from tests.daemon.waiting import wait_for

INPUTS = Path(__file__).resolve().parents[1] / "golden" / "inputs"
EVERYTHING = yaml.safe_load((INPUTS / "everything-1.2.yaml").read_text())
REMOTE = "remote-eu"
NAMESPACE = "istio-system"
MASTER_USER = "system:serviceaccount:istio-system:federationd"
REMOTE_USER = "system:serviceaccount:istio-system:istio-operator"

Obj = dict[str, Any]
_SIGNS = re.compile(r'^(rest_client_requests_total\{code="403"[^}]*\}|federationd_actuations_total\{[^}]*result="failure"[^}]*\}) (\S+)$', re.M)


@dataclass
class Outcome:
    """What one run showed."""

    completed: bool = False
    #: metric lines that say something broke (403s, failed actuations)
    signs: list[str] = field(default_factory=list)
    #: where the run stopped, if it did not complete
    stage: str = ""
    #: cluster → (user, verb, group, resource) → requests, from the emulator
    audit: dict[str, Counter[tuple[str, str, str, str]]] = field(default_factory=dict)
    #: cluster → denied (user, verb, group, resource) → requests
    denied: dict[str, dict[tuple[str, str, str, str], int]] = field(default_factory=dict)

    @property
    def broken(self) -> bool:
        return bool(self.signs) or not self.completed


def without_rule(docs: list[Obj], index: int) -> list[Obj]:
    """``docs`` with rule ``index`` of its ClusterRole taken out."""
    out: list[Obj] = json.loads(json.dumps(docs))
    role = next(d for d in out if d["kind"] == "ClusterRole")
    del role["rules"][index]
    return out


def role_rules(docs: list[Obj]) -> list[Obj]:
    return list(next(d for d in docs if d["kind"] == "ClusterRole")["rules"])


async def _signs(d: DaemonProcess) -> list[str]:
    with contextlib.suppress(Exception):
        code, text = await d.get("/metrics")
        if code == 200:
            return [m.group(0) for m in _SIGNS.finditer(text) if float(m.group(2)) > 0]
    return []


class _Stop(Exception):
    pass


def widest_mesh() -> Obj:
    """``everything-1.2`` as the mesh ``istio``, on the mesh's own root of trust (the
    daemon writes the cacerts Secrets)."""
    doc: Obj = json.loads(json.dumps(EVERYTHING))
    doc["metadata"]["name"] = "istio"
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"]["citadel"].pop("caSecretName", None)
    return doc


def small_mesh() -> Obj:
    """Seed 000's mesh with PodDisruptionBudgets and mesh expansion (seed 002's split
    horizon: Gateways on the remote too): every kind a role rule is about, at a fraction
    of the widest mesh's objects."""
    doc: Obj = yaml.safe_load(SEED_000)
    doc["metadata"]["namespace"] = NAMESPACE
    doc["spec"]["defaultPodDisruptionBudget"] = {"enabled": True}
    doc["spec"]["meshExpansion"] = True
    return doc


async def run(
    directory: Path, *, master_docs: list[Obj] | None = None, remote_docs: list[Obj] | None = None,
    mesh: Obj | None = None,
    stop_at_first_sign: bool = False, timeout: float = 120,  # noqa: ASYNC109 - the whole run's deadline
) -> Outcome:
    out = Outcome()
    daemons: list[DaemonProcess] = []
    deadline = time.monotonic() + timeout
    async with Fleet([ClusterSpec("master"), ClusterSpec(REMOTE)], directory=directory / "fleet") as fleet:
        master, remote = fleet["master"], fleet[REMOTE]
        for c in fleet:
            c.server.audit = Counter()
        install_crds(fleet)
        dkc = identity.master_kubeconfig(master, docs=master_docs)
        rkc = identity.remote_kubeconfig(remote, docs=remote_docs)

        async def until(stage: str, cond: Callable[[], Awaitable[bool] | bool]) -> None:
            """``cond`` within the run's deadline, collecting the daemon's signs of trouble
            meanwhile; ``_Stop`` at the deadline (or at the first sign, if asked)."""
            out.stage = stage

            async def reached() -> bool:
                r = cond()
                if not isinstance(r, bool):
                    r = await r
                if r:
                    return True
                if daemons:
                    out.signs = await _signs(daemons[0])
                    if out.signs and stop_at_first_sign:
                        raise _Stop
                return False

            try:
                await wait_for(reached, timeout=max(0.0, deadline - time.monotonic()), what=stage, max_interval=0.3)
            except AssertionError as e:
                if not str(e).startswith("timed out"):
                    raise
                raise _Stop from None

        def status(kind: str, name: str) -> Obj:
            o = master.store.get("istio.banzaicloud.io/v1beta1", kind, name, NAMESPACE) or {}
            return o.get("status") or {}

        def available(kind: str, name: str, generation: int | None = None) -> bool:
            st = status(kind, name)
            return st.get("Status") == "Available" and (generation is None or st.get("observedGeneration") == generation)

        try:
            # what users apply, written as the admin straight into the store (no kubectl
            # process per step: many runs share the machine)
            store = master.store
            store.create(mesh if mesh is not None else widest_mesh())
            store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": REMOTE, "namespace": NAMESPACE},
                          "data": {REMOTE: base64.b64encode(rkc).decode()}})
            store.create({
                "apiVersion": "istio.banzaicloud.io/v1beta1", "kind": "RemoteIstio",
                "metadata": {"name": REMOTE, "namespace": NAMESPACE},
                "spec": {"autoInjectionNamespaces": ["default"], "enabledServices": [{"name": "istio-pilot"}]},
            })
            d = await start_daemon(daemons, fleet, directory / "log.db", kubeconfig=dkc, extra=["--leader-elect"], wait_ready=False)
            await until("installed", lambda: available("Istio", "istio") and available("RemoteIstio", REMOTE))
            await until("converged", d.converged)
            live = store.get("istio.banzaicloud.io/v1beta1", "Istio", "istio", NAMESPACE) or {}
            live["spec"] = yaml.safe_load(SEED_000)["spec"]
            gen = int(store.update(live)["metadata"]["generation"])
            await until("shrunk", lambda: available("Istio", "istio", gen))
            await until("converged after shrinking", d.converged)
            store.remove("istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, NAMESPACE)
            await until("remote left", lambda: master.store.get("istio.banzaicloud.io/v1beta1", "RemoteIstio", REMOTE, NAMESPACE) is None)
            await until("converged after leaving", d.converged)
            out.signs = await _signs(d)
            out.completed = True
            out.stage = "done"
        except _Stop:
            pass
        finally:
            for p in daemons:
                if p.proc is not None and p.proc.returncode is None:
                    with contextlib.suppress(Exception):
                        await p.terminate(signal.SIGTERM, timeout=15)
                if p.proc is not None and p.proc.returncode is None:
                    with contextlib.suppress(Exception):
                        await p.terminate(signal.SIGKILL, timeout=10)
            for c in fleet:
                out.audit[c.name] = c.server.audit or Counter()
                out.denied[c.name] = dict(c.server.rbac.denied)
    return out
