"""The seed-002 workflow end to end: a running Istio 1.1 mesh upgraded to 1.2 by applying
the new CR, and the refusal of a version this build does not support.

One fleet and one daemon for the module; the tests run in file order. The 1.1 CR is the
seed's (``tests/golden/inputs/seed-002-1.1.11.yaml``, the golden files' input); the 1.2
CR is the same with the new version, as the seed applies the release-1.2 sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from federationd.api.v1beta1 import image_tag_for
from federationd.render import UNSUPPORTED_MESSAGE
from tests.daemon.conftest import kubectl
from tests.daemon.test_e2e import _quiet
from tests.daemon.waiting import wait_for

from .conftest import Mesh
from .support import (
    NAMESPACE,
    Obj,
    StatusLog,
    apply,
    expected,
    inventory,
    printer_row,
    settled,
    show,
    status,
    versions,
    with_spec,
    workload_images,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

OLD_CR = (Path(__file__).resolve().parents[1] / "golden" / "inputs" / "seed-002-1.1.11.yaml").read_text()
OLD: Obj = yaml.safe_load(OLD_CR)
NEW: Obj = with_spec(OLD, version="1.2.2")
NAME = OLD["metadata"]["name"]
#: the workload held unready after the upgrade, so Reconciling can be observed
HELD = "istio-pilot"


async def _images_seen_by_kubectl(mesh: Mesh) -> dict[str, list[str]]:
    out = await kubectl(mesh.kubeconfig, "get", "deployments,daemonsets", "-n", NAMESPACE, "-o", "json")
    return workload_images({("", o["kind"], NAMESPACE, o["metadata"]["name"]): o for o in json.loads(out)["items"]})


def _tags(images: dict[str, list[str]]) -> set[str]:
    return {i.rsplit(":", 1)[1] for imgs in images.values() for i in imgs}


async def _crds(mesh: Mesh) -> set[str]:
    out = await kubectl(mesh.kubeconfig, "get", "crd", "-o", "name")
    return {ln.split("/", 1)[1] for ln in out.splitlines() if ln}


async def test_upgrade_from_1_1_to_1_2_on_a_running_mesh(mesh: Mesh) -> None:
    old_tag, new_tag = image_tag_for(OLD["spec"]["version"]), image_tag_for(NEW["spec"]["version"])
    assert old_tag.startswith("1.1.") and new_tag.startswith("1.2.")
    gen = await apply(mesh, OLD_CR)
    await settled(mesh, NAME, gen)
    before = inventory(mesh.master)
    want_old, want_new = expected(mesh.master, OLD), expected(mesh.master, NEW)
    assert before.keys() == want_old.keys(), show(before.keys() ^ want_old.keys())
    assert _tags(await _images_seen_by_kubectl(mesh)) == {old_tag}
    only_1_1 = want_old.keys() - want_new.keys()
    gone_crds = {k[3] for k in only_1_1 if k[1] == "CustomResourceDefinition"}
    assert gone_crds and gone_crds <= await _crds(mesh)  # 1.1's adapter CRDs are served

    b = mesh.master.behaviours
    b.hold_ready(NAMESPACE, HELD)
    with StatusLog(mesh.master, NAME) as log:
        try:
            gen = await apply(mesh, NEW)
            await settled(mesh, NAME, gen, "Reconciling")
            # every write is done, but one workload has not rolled out: not Available
            assert "Available" not in log.statuses(gen), log.seen
            assert (await printer_row(mesh, NAME))[1] == "Reconciling"
            images = workload_images(inventory(mesh.master))
            assert _tags(images) == {new_tag}, images
        finally:
            b.release_ready(NAMESPACE, HELD)
        await settled(mesh, NAME, gen)
        statuses = log.statuses(gen)
        assert statuses[-1] == "Available" and "Reconciling" in statuses, log.seen

    # what a user checks after the upgrade: every component on the 1.2 images …
    images = await _images_seen_by_kubectl(mesh)
    assert images == workload_images(want_new) and _tags(images) == {new_tag}, images
    # … and what 1.2 no longer has is gone, from the cluster and from discovery
    after = {k: v for k, v in inventory(mesh.master).items() if not (k[1] == "CustomResourceDefinition" and k[3] in gone_crds)}
    assert after.keys() == want_new.keys(), f"missing:\n  {show(want_new.keys() - after.keys())}\nleft over:\n  {show(after.keys() - want_new.keys())}"
    # 1.1's CRDs are kept as they are (custom resources of users may live in them; as
    # Helm never deletes CRDs, federationd does not): still served
    assert gone_crds <= await _crds(mesh)
    assert (await printer_row(mesh, NAME))[1] == "Available"


async def test_an_unsupported_version_is_refused_and_changes_nothing(mesh: Mesh) -> None:
    gen = await apply(mesh, NEW)
    await settled(mesh, NAME, gen)
    master = mesh.master

    def object_writes() -> int:
        # everything but the CR itself (its status) and Kubernetes Events
        r = master.requests
        return r.mutating() - r.mutating("istios") - r.mutating("events")

    before, writes = inventory(master), object_writes()
    gen = await apply(mesh, with_spec(NEW, version="1.3.0"))
    await settled(mesh, NAME, gen, "ReconcileFailed")
    st = status(master, NAME)
    assert st["ErrorMessage"] == UNSUPPORTED_MESSAGE, st
    lines = (await kubectl(mesh.kubeconfig, "get", "istios", "-n", NAMESPACE)).splitlines()
    assert any(ln.split()[:2] == [NAME, "ReconcileFailed"] and UNSUPPORTED_MESSAGE in ln for ln in lines), lines
    # a full resync later nothing has been written and nothing moved
    await _quiet(mesh.daemon, resyncs=1)
    assert object_writes() == writes, master.requests.snapshot()
    after = inventory(master)
    assert versions(after) == versions(before)
    assert workload_images(after) == workload_images(before)
    assert status(master, NAME)["Status"] == "ReconcileFailed"

    # back to a supported version: Available again, and still nothing to write
    gen = await apply(mesh, NEW)
    await settled(mesh, NAME, gen)
    await wait_for(mesh.daemon.converged, timeout=30, what="converged")
    assert object_writes() == writes, master.requests.snapshot()
    assert versions(inventory(master)) == versions(before)
