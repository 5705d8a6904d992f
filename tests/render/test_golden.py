"""Golden files: what users of the seed samples get, object for object.

Each ``tests/golden/inputs/<name>.yaml`` is a CR as the seed articles show it; the full
rendered object set is checked in as ``tests/golden/<name>.yaml`` so that any change to
what users get shows up in review. After an intended change, regenerate with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/render/test_golden.py

and review the diff of ``tests/golden/`` like any other code.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from events import types as ev
from events.types import ClusterName
from federationd.api import v1beta1
from federationd.projections.derive import gateway_addresses
from federationd.projections.state import EMPTY, fold
from federationd.render import render_master, render_remote
from federationd.render.objects import MeshNetwork, NetworkGateway, RenderFacts, dump_yaml_stream
from tests.projections.helpers import Rec

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
INPUTS = GOLDEN / "inputs"
NS = "istio-system"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

#: What a Kubernetes 1.14 cluster (a release Istio 1.1/1.2 support) serves, as its
#: discovery lists it: golden files show the API versions a real cluster gets.
KUBERNETES_1_14_APIS = (
    "admissionregistration.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1beta1",
    "apps/v1",
    "apps/v1beta1",
    "apps/v1beta2",
    "autoscaling/v1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "batch/v1",
    "batch/v1beta1",
    "coordination.k8s.io/v1",
    "coordination.k8s.io/v1beta1",
    "extensions/v1beta1",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1beta1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "v1",
)


def _announced(cluster: str, address: str) -> tuple[NetworkGateway, ...]:
    """One network's gateways as the daemon derives them: the ingress gateway Service as
    rendered (its default ports), observed with a LoadBalancer IP, through the same
    projection the daemon runs — no hand-written port."""
    svc = next(
        o
        for o in render_master(v1beta1.istio_spec({}, namespace=NS), namespace=NS, facts=RenderFacts())
        if o["kind"] == "Service" and o["metadata"]["name"] == "istio-ingressgateway"
    )
    observed = ev.GatewayAddressesObserved(
        cluster=ClusterName(cluster),
        key=f"Service/{NS}/istio-ingressgateway",
        time=1.0,
        namespace=NS,
        name="istio-ingressgateway",
        service_type="LoadBalancer",
        ips=(address,),
        ports={p["name"]: p["port"] for p in svc["spec"]["ports"]},
        node_ports={p["name"]: p["nodePort"] for p in svc["spec"]["ports"] if "nodePort" in p},
    )
    state = fold(EMPTY, Rec(1, observed))
    addrs, port, _ = gateway_addresses(state, cluster, NS)
    return tuple(NetworkGateway(address=a, port=port) for a in addrs)


#: Seed 001/002: a master and one remote, each its own network behind its ingress gateway.
TWO_CLUSTERS = (
    MeshNetwork(
        name="network-master",
        from_registry=("Kubernetes",),
        gateways=_announced("master", "35.195.10.20"),
    ),
    MeshNetwork(
        name="istio-remote-eu",
        from_registry=("istio-remote-eu",),
        gateways=_announced("istio-remote-eu", "13.48.20.30"),
    ),
)
MASTER_FACTS = {
    "seed-000-minimal": RenderFacts(kubernetes_apis=KUBERNETES_1_14_APIS),
    "seed-004-cni": RenderFacts(kubernetes_apis=KUBERNETES_1_14_APIS),
    "everything-1.2": RenderFacts(
        kubernetes_apis=KUBERNETES_1_14_APIS,
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        ca_secret_name="cacerts",
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
    "seed-002-1.1.11": RenderFacts(
        network="network-master", mesh_networks=TWO_CLUSTERS, kubernetes_apis=KUBERNETES_1_14_APIS
    ),
    "seed-002-locality-failover": RenderFacts(
        kubernetes_apis=KUBERNETES_1_14_APIS,
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
    "seed-002-locality-distribute": RenderFacts(
        kubernetes_apis=KUBERNETES_1_14_APIS,
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
}
REMOTE_FACTS = {
    "seed-001-remote": RenderFacts(
        kubernetes_apis=KUBERNETES_1_14_APIS,
        cluster="istio-remote-eu",
        role="remote",
        network="istio-remote-eu",
        mesh_networks=TWO_CLUSTERS,
        ca_secret_name="cacerts",
    )
}


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((INPUTS / f"{name}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _render(name: str) -> str:
    if name in REMOTE_FACTS:
        doc = _load(name)
        master_cr = _load(Path(doc["master"]).stem)
        spec = v1beta1.istio_spec(master_cr["spec"], namespace=NS)
        remote = v1beta1.remote_istio_spec(doc["remote"]["spec"], namespace=NS)
        objs = render_remote(spec, remote, namespace=NS, facts=REMOTE_FACTS[name])
    else:
        spec = v1beta1.istio_spec(_load(name)["spec"], namespace=NS)
        objs = render_master(spec, namespace=NS, facts=MASTER_FACTS[name])
    return dump_yaml_stream(objs)


def test_every_input_has_a_case() -> None:
    names = {p.stem for p in INPUTS.glob("*.yaml")}
    assert names == set(MASTER_FACTS) | set(REMOTE_FACTS)


@pytest.mark.parametrize("name", sorted([*MASTER_FACTS, *REMOTE_FACTS]))
def test_golden(name: str) -> None:
    got = _render(name)
    path = GOLDEN / f"{name}.yaml"
    if UPDATE:
        path.write_text(got)
        print(f"updated {path}")
        return
    if not path.exists():
        pytest.fail(f"{path} missing; run UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/render/test_golden.py")
    want = path.read_text()
    if got != want:
        diff = "".join(
            list(
                difflib.unified_diff(
                    want.splitlines(keepends=True),
                    got.splitlines(keepends=True),
                    fromfile=f"golden/{name}.yaml",
                    tofile="rendered",
                )
            )[:80]
        )
        pytest.fail(
            f"rendered objects differ from {path.name} (regenerate with UPDATE_GOLDEN=1 after review):\n{diff}"
        )
