"""The Istio 1.2 control plane end to end: install from the seed-000 CR, every optional
component switched off and on, and the CNI plugin (seed 004).

One fleet and one daemon for the module (``conftest.mesh``); the tests run in file order
and each starts by applying the CR it needs. What is asserted is what a user sees: the
objects on the cluster, ``kubectl get istios`` / ``kubectl get pods``, the CR status.
What a component owns comes from render itself (``support.expected``), so the tests
follow the profiles instead of restating them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd.api.v1beta1 import DEFAULT_VERSION, image_tag_for
from federationd.render.objects import COMPONENT_LABEL
from federationd.sim.server import MUTATING
from tests.daemon.conftest import kubectl
from tests.daemon.test_e2e import SEED_000
from tests.daemon.waiting import wait_for

from .conftest import Mesh
from .support import (
    NAMESPACE,
    Key,
    Obj,
    StatusLog,
    applied,
    apply,
    cr,
    expected,
    inventory,
    printer_row,
    same_render,
    settled,
    show,
    status,
    status_text,
    versions,
    with_spec,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE: Obj = yaml.safe_load(SEED_000)
NAME = BASE["metadata"]["name"]
#: What the source shows in ``kubectl get pods -n istio-system`` (its own operator
#: aside): each workload's pod and its READY column (pilot and mixer run a proxy).
SEED_PODS = {
    "istio-citadel": "1/1", "istio-egressgateway": "1/1", "istio-galley": "1/1",
    "istio-ingressgateway": "1/1", "istio-pilot": "2/2", "istio-policy": "2/2",
    "istio-sidecar-injector": "1/1", "istio-telemetry": "2/2",
}
#: Seed 004's CR as the golden files take it (the seed's own sample, verbatim).
SEED_004 = (Path(__file__).resolve().parents[1] / "golden" / "inputs" / "seed-004-cni.yaml").read_text()


def _deployment(mesh: Mesh, name: str) -> Obj | None:
    return mesh.master.store.get("apps/v1", "Deployment", name, NAMESPACE)


async def test_seed_000_installs_the_full_control_plane(mesh: Mesh) -> None:
    b = mesh.master.behaviours
    # galley never passes its readiness probe until released
    b.hold_ready(NAMESPACE, "istio-galley")
    with StatusLog(mesh.master, NAME) as log:
        try:
            generation = await apply(mesh, SEED_000)
            assert generation == 1
            await settled(mesh, NAME, generation, "Reconciling")
            assert "Available" not in log.statuses(generation), log.seen
            assert (await printer_row(mesh, NAME))[1] == "Reconciling"
            galley = _deployment(mesh, "istio-galley")
            assert galley is not None and not (galley.get("status") or {}).get("readyReplicas")
        finally:
            b.release_ready(NAMESPACE, "istio-galley")
        await settled(mesh, NAME, generation)
        assert log.statuses(generation)[-1] == "Available"
        # Created first, then Reconciling, then Available: never Available early
        statuses = log.statuses(generation)
        assert statuses.index("Reconciling") < statuses.index("Available"), log.seen

    # the printer columns of the seed
    st = status(mesh.master, NAME)
    row = await printer_row(mesh, NAME)
    assert row[:3] == [NAME, "Available", "[" + ",".join(st["GatewayAddress"]) + "]"], row
    assert st["GatewayAddress"] and st["ErrorMessage"] == ""

    # the same workloads as the source's `kubectl get pods -n istio-system`, all running
    async def pods() -> list[list[str]]:
        out = await kubectl(mesh.kubeconfig, "get", "pods", "-n", NAMESPACE, "--no-headers")
        return [ln.split() for ln in out.splitlines() if ln.strip()]

    await wait_for(lambda: _pod_count(pods, len(SEED_PODS)), timeout=20, what="one pod per workload")
    rows = await pods()
    assert {r[0].rsplit("-", 2)[0]: r[1] for r in rows} == SEED_PODS, rows
    assert all(r[2] == "Running" for r in rows), rows
    for name in SEED_PODS:
        d = _deployment(mesh, name)
        assert d is not None and d["status"]["readyReplicas"] == d["spec"].get("replicas", 1), name

    # exactly the rendered control plane: the CRDs, the webhook, the mesh ConfigMap, …
    inv = inventory(mesh.master)
    want = expected(mesh.master, BASE)
    assert inv.keys() == want.keys(), f"missing:\n  {show(want.keys() - inv.keys())}\nextra:\n  {show(inv.keys() - want.keys())}"
    crds = {k[3] for k in inv if k[1] == "CustomResourceDefinition"}
    assert {"virtualservices.networking.istio.io", "meshpolicies.authentication.istio.io",
            "rules.config.istio.io", "authorizationpolicies.rbac.istio.io"} <= crds
    for c in crds:  # served: a user can list Istio's own kinds
        group, plural = c.split(".", 1)[1], c.split(".", 1)[0]
        assert mesh.master.store.registry.any_version(group, plural) is not None, c
    hook = applied(mesh.master, want[("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "", "istio-sidecar-injector")])
    assert hook is not None
    assert hook["webhooks"][0]["namespaceSelector"]["matchLabels"] == {"istio-injection": "enabled"}
    assert hook["webhooks"][0]["clientConfig"]["service"]["name"] == "istio-sidecar-injector"
    mesh_cm = mesh.master.store.get("v1", "ConfigMap", "istio", NAMESPACE)
    assert mesh_cm is not None and "mesh" in mesh_cm["data"] and "meshNetworks" in mesh_cm["data"]
    tag = image_tag_for(DEFAULT_VERSION)  # no version in the CR: the newest supported
    assert tag.startswith("1.2.")
    assert {i.rsplit(":", 1)[1] for d in SEED_PODS for i in _images(mesh, d)} == {tag}


async def _pod_count(pods: Any, n: int) -> bool:
    return len(await pods()) == n


def _images(mesh: Mesh, name: str) -> list[str]:
    d = _deployment(mesh, name) or {"spec": {"template": {"spec": {"containers": []}}}}
    return [c["image"] for c in d["spec"]["template"]["spec"]["containers"]]


async def test_reconciling_names_the_workloads_not_ready(mesh: Mesh) -> None:
    """Issue 5: "otherwise Reconciling with the names of what is not ready yet"."""
    b = mesh.master.behaviours
    gen = await apply(mesh, BASE)
    await settled(mesh, NAME, gen)
    b.hold_ready(NAMESPACE, "istio-telemetry")
    try:
        # new mixer resources: policy rolls out, the held telemetry never completes
        gen = await apply(mesh, with_spec(BASE, mixer={"resources": {"requests": {"cpu": "11m"}}}))
        await settled(mesh, NAME, gen, "Reconciling")

        def only_the_held_one_waits() -> bool:
            # policy's new Pods become ready in their own time; telemetry's never do
            text = status_text(status(mesh.master, NAME))
            return "istio-policy" not in text and "istio-pilot" not in text

        await wait_for(only_the_held_one_waits, timeout=30,
                       what=f"only the held workload named ({status(mesh.master, NAME)})")
        st = status(mesh.master, NAME)
        assert st.get("Status") == "Reconciling", st
        assert "istio-telemetry" in status_text(st), st
    finally:
        b.release_ready(NAMESPACE, "istio-telemetry")
    await settled(mesh, NAME, gen)
    gen = await apply(mesh, BASE)
    await settled(mesh, NAME, gen)


# --- each component off and on again ---------------------------------------------------------------

#: (spec change that flips the component from its seed-000 default, its component labels)
TOGGLES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "mixer off": ({"mixer": {"enabled": False}}, {"mixer"}),
    "galley off": ({"galley": {"enabled": False}}, {"galley"}),
    "egress gateway off": ({"gateways": {"egress": {"enabled": False}}}, {"egressgateway"}),
    "sidecar injector off": ({"sidecarInjector": {"enabled": False}}, {"sidecar-injector"}),
    "node agent on": ({"nodeAgent": {"enabled": True}}, {"nodeagent"}),
    "istio coredns on": ({"istioCoreDNS": {"enabled": True}}, {"istiocoredns"}),
}


async def _switch(mesh: Mesh, before_doc: Obj, after_doc: Obj, components: set[str], *, name: str = NAME) -> None:
    """Apply ``after_doc`` over ``before_doc`` (already Available) and check that exactly
    the objects render gives ``components`` appeared or went, and that no object render
    gives the same in both was written."""
    before = inventory(mesh.master)
    want_before, want_after = expected(mesh.master, before_doc), expected(mesh.master, after_doc)
    assert before.keys() == want_before.keys(), show(before.keys() ^ want_before.keys())
    gone_want = want_before.keys() - want_after.keys()
    new_want = want_after.keys() - want_before.keys()
    # render's side: the difference is the component, and not nothing
    diff = {k: o for k, o in {**want_before, **want_after}.items() if k in gone_want | new_want}
    assert diff and {o["metadata"]["labels"][COMPONENT_LABEL] for o in diff.values()} == components, show(diff)

    counts = dict(mesh.master.requests.counts)
    gen = await apply(mesh, after_doc)
    await settled(mesh, name, gen)
    after = inventory(mesh.master)
    writes = {r for (verb, r), n in mesh.master.requests.counts.items()
              if verb in MUTATING and n != counts.get((verb, r), 0)}
    assert before.keys() - after.keys() == gone_want, f"deleted:\n  {show(before.keys() - after.keys())}\nexpected:\n  {show(gone_want)}"
    assert after.keys() - before.keys() == new_want, f"created:\n  {show(after.keys() - before.keys())}\nexpected:\n  {show(new_want)}"
    untouched = same_render(want_before, want_after)
    v0, v1 = versions(before), versions(after)
    rewritten: set[Key] = {k for k in untouched if v0[k] != v1[k]}
    assert not rewritten, f"objects render left alone were written:\n  {show(rewritten)}"
    # what render did change was written, and is what render says
    for k in (want_before.keys() & want_after.keys()) - untouched:
        assert v0[k] != v1[k], f"{k} not updated"
    for k in new_want:
        _assert_applied(want_after[k], applied(mesh.master, want_after[k]))
    # and no request wrote a kind of object render did not change (the CR's status and
    # its Kubernetes Events aside)
    changed = gone_want | new_want | ((want_before.keys() & want_after.keys()) - untouched)
    allowed = {_plural(mesh, k) for k in changed} | {"istios", "events"}
    assert writes <= allowed, f"written: {sorted(writes - allowed)}"


def _plural(mesh: Mesh, k: Key) -> str:
    kind = next(kd for kd in mesh.master.store.registry if kd.group == k[0] and kd.kind == k[1])
    return kind.plural


def _assert_applied(want: Obj, got: Obj) -> None:
    """Every field render set is on the cluster object with the same value."""

    def walk(w: Any, g: Any, path: str) -> None:
        if isinstance(w, dict):
            assert isinstance(g, dict), path
            for k, v in w.items():
                walk(v, g.get(k), f"{path}.{k}")
        elif isinstance(w, list):
            assert isinstance(g, list) and len(g) == len(w), path
            for i, (a, b) in enumerate(zip(w, g, strict=True)):
                walk(a, b, f"{path}[{i}]")
        else:
            assert w == g or str(w) == str(g), f"{path}: {w!r} != {g!r}"

    walk({k: v for k, v in want.items() if k != "apiVersion"}, got, want["kind"])


@pytest.mark.parametrize("toggle", list(TOGGLES))
async def test_component_off_and_on_again(mesh: Mesh, toggle: str) -> None:
    change, components = TOGGLES[toggle]
    flipped = with_spec(BASE, **change)
    gen = await apply(mesh, BASE)
    await settled(mesh, NAME, gen)
    await _switch(mesh, BASE, flipped, components)
    await _switch(mesh, flipped, BASE, components)


async def test_available_waits_for_the_rollout_even_when_the_watch_lags(mesh: Mesh) -> None:
    """Readiness observed before a workload's last write says nothing about that write."""
    b = mesh.master.behaviours
    gen = await apply(mesh, BASE)
    await settled(mesh, NAME, gen)
    b.hold_ready(NAMESPACE, "istio-pilot")
    with StatusLog(mesh.master, NAME) as log:
        try:
            # the Deployment watch is re-established late (a slow apiserver, a reconnect)
            mesh.master.faults.latency(2.5, verb="watch", resource="deployments", duration=2.0)
            assert mesh.master.store.drop_watches(("apps", "deployments")) >= 1
            gen = await apply(mesh, with_spec(BASE, pilot={"resources": {"requests": {"cpu": "11m"}}}))
            await settled(mesh, NAME, gen, "Reconciling")
            assert "Available" not in log.statuses(gen), log.seen
        finally:
            b.release_ready(NAMESPACE, "istio-pilot")
            mesh.master.faults.clear()
    await settled(mesh, NAME, gen)
    gen = await apply(mesh, BASE)
    await settled(mesh, NAME, gen)


# --- CNI ---------------------------------------------------------------------------------------------


def _injector_template(mesh: Mesh) -> str:
    cm = mesh.master.store.get("v1", "ConfigMap", "istio-sidecar-injector", NAMESPACE)
    assert cm is not None
    return str(cm["data"]["config"])


async def test_cni_plugin_replaces_istio_init(mesh: Mesh) -> None:
    # seed 004's CR has its own name: the seed-000 Istio goes first (one Istio per mesh)
    await kubectl(mesh.kubeconfig, "delete", "istio", NAME, "-n", NAMESPACE, "--ignore-not-found")
    # (its CRDs stay: CRDs are never deleted)
    await wait_for(lambda: not [k for k in inventory(mesh.master) if k[1] != "CustomResourceDefinition"], timeout=30, what="seed-000 control plane uninstalled")
    doc = yaml.safe_load(SEED_004)
    name = doc["metadata"]["name"]
    gen = await apply(mesh, SEED_004)
    await settled(mesh, name, gen)

    ds = mesh.master.store.get("apps/v1", "DaemonSet", "istio-cni-node", NAMESPACE)
    assert ds is not None and ds["status"]["numberReady"] == len(mesh.master.store.list("v1", "Node"))
    cni_cm = mesh.master.store.get("v1", "ConfigMap", "istio-cni-config", NAMESPACE)
    assert cni_cm is not None
    cni_conf = json.loads(cni_cm["data"]["cni_network_config"])
    assert cni_conf["type"] == "istio-cni"
    assert cni_conf["kubernetes"]["exclude_namespaces"] == ["istio-system"]
    assert "istio-init" not in _injector_template(mesh)
    assert inventory(mesh.master).keys() == expected(mesh.master, doc).keys()

    # CNI off: the DaemonSet and its config go, istio-init comes back; and on again
    off = with_spec(doc, sidecarInjector={"initCNIConfiguration": {"enabled": False}})
    await _switch(mesh, doc, off, {"cni"}, name=name)
    assert mesh.master.store.get("apps/v1", "DaemonSet", "istio-cni-node", NAMESPACE) is None
    assert mesh.master.store.get("v1", "ConfigMap", "istio-cni-config", NAMESPACE) is None
    assert "istio-init" in _injector_template(mesh)
    await _switch(mesh, off, doc, {"cni"}, name=name)
    assert "istio-init" not in _injector_template(mesh)
    assert cr(mesh.master, name)["status"]["Status"] == "Available"

