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

from federationd.api import v1beta1
from federationd.render import render_master, render_remote
from federationd.render.objects import MeshNetwork, NetworkGateway, RenderFacts, dump_yaml_stream

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
INPUTS = GOLDEN / "inputs"
NS = "istio-system"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

#: Seed 001/002: a master and one remote, each its own network behind its ingress gateway.
TWO_CLUSTERS = (
    MeshNetwork(
        name="network-master",
        from_registry=("Kubernetes",),
        gateways=(NetworkGateway(address="35.195.10.20", port=443),),
    ),
    MeshNetwork(
        name="istio-remote-eu",
        from_registry=("istio-remote-eu",),
        gateways=(NetworkGateway(address="13.48.20.30", port=443),),
    ),
)
MASTER_FACTS = {
    "seed-000-minimal": RenderFacts(),
    "seed-004-cni": RenderFacts(),
    "everything-1.2": RenderFacts(
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        ca_secret_name="cacerts",
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
    "seed-002-1.1.11": RenderFacts(network="network-master", mesh_networks=TWO_CLUSTERS),
    "seed-002-locality-failover": RenderFacts(
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
    "seed-002-locality-distribute": RenderFacts(
        network="network-master",
        mesh_networks=TWO_CLUSTERS,
        localities=("eu-north-1/eu-north-1a", "europe-west2/europe-west2-a"),
    ),
}
REMOTE_FACTS = {
    "seed-001-remote": RenderFacts(
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
