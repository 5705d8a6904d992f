"""The spec cases of the bad-input corpus, applied with kubectl as a user would.

Three simulated API servers, the CRDs applied with kubectl too: one of 1.32 holding the
CRDs with their CEL rules (``python -m federationd.api.crds --cel``), which it
evaluates; a 1.24 one given the same CRDs, whose API server drops the rules (the
validation-expressions gate is off there); and a 1.16 one, a release Istio 1.1/1.2 runs
on, holding ``deploy/crds/`` as shipped (no CEL rules: kubectl itself refuses the field
on such a release). On the first, every case marked ``schema`` is refused by ``kubectl
apply`` with that message and every ``status_only`` case is created (the daemon then
refuses it in the CR's status, ``test_corpus.py``); on the others the cases only a CEL
rule refuses are created as well — the status path is what protects those clusters.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from federationd.api import crds
from federationd.sim import ClusterSpec, Fleet

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine"),
]

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
GROUP = "istio.banzaicloud.io"
OLD = "1.24"
LEGACY = "1.16"


def _spec_cases() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in CASES:
        case = yaml.safe_load(path.read_text())
        if case["kind"] in ("Istio", "RemoteIstio"):
            out.append((path.stem, case))
    return out


def _object(stem: str, case: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1beta1",
        "kind": case["kind"],
        "metadata": {"name": case.get("name", stem), "namespace": "istio-system"},
        "spec": case["spec"],
    }


def _by_cel(case: dict[str, Any]) -> bool:
    """Refused by a CEL rule (a failed rule's value is the node's type)."""
    return 'Invalid value: "object"' in case.get("schema", "")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    specs = [ClusterSpec(name="current", kubernetes_version="1.32"), ClusterSpec(name="old", kubernetes_version=OLD),
             ClusterSpec(name="legacy", kubernetes_version=LEGACY)]
    async with Fleet(specs, directory=tmp_path_factory.mktemp("fleet")) as f:
        yield f


async def _kubectl(fleet: Fleet, home: Path, context: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(fleet.merged_kubeconfig_path), "--context", context, *args,
        env={**os.environ, "HOME": str(home), "KUBECONFIG": ""},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode()


async def _apply_corpus(fleet: Fleet, home: Path, context: str, *, cel: bool, only_cel: bool = False) -> tuple[str, str]:
    crd_dir = ROOT / "deploy" / "crds"
    if cel:
        crd_dir = home / "crds-cel"
        assert crds.main(["--cel", "--write", str(crd_dir)]) == 0
    rc, _, err = await _kubectl(fleet, home, context, "apply", "-f", str(crd_dir))
    assert rc == 0, err
    rc, _, err = await _kubectl(fleet, home, context, "create", "namespace", "istio-system")
    assert rc == 0, err
    # the CRDs' kinds are served once discovery says so; kubectl rereads it on a miss
    manifest = home / f"corpus-{context}.yaml"
    cases = [(stem, case) for stem, case in _spec_cases() if _by_cel(case) or not only_cel]
    manifest.write_text(yaml.safe_dump_all([_object(stem, case) for stem, case in cases], sort_keys=False))
    _, out, err = await _kubectl(fleet, home, context, "apply", "-f", str(manifest))
    return out, err


def _refusal(err: str, kind: str, name: str) -> str:
    lines = [line for line in err.splitlines() if f'{kind}.{GROUP} "{name}" is invalid' in line]
    return lines[0] if lines else ""


async def test_kubectl_apply_refuses_what_the_schema_can_say(fleet: Fleet, tmp_path: Path) -> None:
    out, err = await _apply_corpus(fleet, tmp_path, "current", cel=True)
    assert fleet["current"].server.kube_version.minor >= 25
    for stem, case in _spec_cases():
        obj = _object(stem, case)
        name = obj["metadata"]["name"]
        refusal = _refusal(err, case["kind"], name)
        if "schema" in case:
            assert case["schema"] in refusal, (stem, refusal or err)
        else:
            assert f"{case['kind'].lower()}.{GROUP}/{name} created" in out, (stem, err)


async def test_a_server_before_1_25_ignores_the_rules(fleet: Fleet, tmp_path: Path) -> None:
    out, err = await _apply_corpus(fleet, tmp_path, "old", cel=True)
    rc, crd, _ = await _kubectl(fleet, tmp_path, "old", "get", "crd", f"istios.{GROUP}",
                                "-o", "jsonpath={.spec.versions[0].schema}")
    assert rc == 0 and "minReplicas" in crd
    assert "x-kubernetes-validations" not in crd  # dropped: the gate is off on 1.24
    cel_cases = 0
    for stem, case in _spec_cases():
        obj = _object(stem, case)
        name = obj["metadata"]["name"]
        refusal = _refusal(err, case["kind"], name)
        if "schema" in case and not _by_cel(case):
            assert case["schema"] in refusal, (stem, refusal or err)
        else:
            cel_cases += _by_cel(case)
            assert f"{case['kind'].lower()}.{GROUP}/{name} created" in out, (stem, err)
    assert cel_cases >= 6


async def test_the_shipped_crds_apply_where_istio_1_2_runs(fleet: Fleet, tmp_path: Path) -> None:
    """deploy/crds/ on a 1.16 master: kubectl accepts it (it would refuse an
    ``x-kubernetes-validations`` field there), and what only a CEL rule says is left to
    the CR's status."""
    out, err = await _apply_corpus(fleet, tmp_path, "legacy", cel=False, only_cel=True)
    assert fleet["legacy"].server.kube_version.minor == 16
    cel_cases = [(stem, case) for stem, case in _spec_cases() if _by_cel(case)]
    for stem, case in cel_cases:
        name = _object(stem, case)["metadata"]["name"]
        assert f"{case['kind'].lower()}.{GROUP}/{name} created" in out, (stem, err)
    assert len(cel_cases) >= 6
