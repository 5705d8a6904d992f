"""A spec that breaks one of the CRD's CEL rules, refused both ways, end to end.

``kubectl apply`` is refused at once by the API server (1.32 evaluates the rule). A CR
that got in before the CRD had the rule — written straight into the store here, as an
older CRD or a 1.24 server would have let it in — is refused by the daemon in its status,
nothing of it applied; the status write itself passes because the server ratchets a
rule on a value the write does not change (1.30 and later). From 1.25 to 1.29 the server
refuses that status write too: the daemon then says it in a Warning Event and retries
with backoff, not in a loop.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from federationd.sim import ClusterSpec, Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .waiting import wait_for

BAD = {
    "apiVersion": "istio.banzaicloud.io/v1beta1",
    "kind": "Istio",
    "metadata": {"name": "istio", "namespace": "istio-system"},
    "spec": {"version": "1.2.8", "pilot": {"minReplicas": 5, "maxReplicas": 2}},
}


def _status(fleet: Fleet) -> dict[str, str]:
    cr = fleet["master"].store.get("istio.banzaicloud.io/v1beta1", "Istio", "istio", "istio-system") or {}
    return cr.get("status") or {}


async def test_a_rule_breaking_spec_is_refused_at_apply_and_in_status(
    daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    # a master of 1.25 or later, given the CRDs with their CEL rules (--cel)
    async with Fleet([ClusterSpec("master", kubernetes_version="1.32")], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet, cel=True)
        await _refused_at_apply_and_in_status(fleet, daemons, tmp_path)


async def _refused_at_apply_and_in_status(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    with pytest.raises(AssertionError) as refused:
        await kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump(BAD))
    assert (
        'The Istio "istio" is invalid: spec.pilot: Invalid value: "object": '
        "minReplicas must not be greater than maxReplicas (1 and 5 when unset)"
    ) in str(refused.value)
    assert fleet["master"].store.get("istio.banzaicloud.io/v1beta1", "Istio", "istio", "istio-system") is None

    fleet["master"].store.create(BAD)
    await start_daemon(daemons, fleet, tmp_path / "log.db")
    await wait_for(lambda: _status(fleet).get("Status") == "ReconcileFailed", timeout=60, what="ReconcileFailed")
    assert _status(fleet)["ErrorMessage"] == "spec.pilot: minReplicas 5 is greater than maxReplicas 2"
    assert fleet["master"].store.get("apps/v1", "Deployment", "istio-pilot", "istio-system") is None


async def test_before_ratcheting_a_refused_status_write_becomes_an_event(
    daemons: list[DaemonProcess], tmp_path: Path
) -> None:
    async with Fleet([ClusterSpec("master", kubernetes_version="1.29")], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet, cel=True)
        fleet["master"].store.create(BAD)
        d = await start_daemon(daemons, fleet, tmp_path / "log.db")
        kc = fleet["master"].kubeconfig_path

        async def warning() -> list[str]:
            out = await kubectl(kc, "get", "events", "-n", "istio-system", "-o", "json")
            return [e["message"] for e in json.loads(out)["items"]
                    if e["involvedObject"]["kind"] == "Istio" and e["reason"] == "ReconcileFailed"]

        async def warned() -> bool:
            return bool(await warning())

        await wait_for(warned, timeout=60, what="ReconcileFailed Event")
        assert await warning() == ["spec.pilot: minReplicas 5 is greater than maxReplicas 2"]
        assert _status(fleet) == {}  # the server refuses the write (no ratcheting before 1.30)
        # retried with the work queue's backoff (5 ms doubling: the 11th attempt comes
        # some 5 s after the first), not re-queued by every re-derivation of the refusal
        patches = fleet["master"].requests

        def attempts(n: int) -> bool:
            return patches.total("patch", "istios") >= n

        await wait_for(lambda: attempts(1), timeout=30, what="a status write")
        first = time.monotonic()
        await wait_for(lambda: attempts(11), timeout=60, what="retries")
        assert time.monotonic() - first >= 3.0
        assert await d.ready()
