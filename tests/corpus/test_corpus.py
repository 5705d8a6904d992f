"""The bad-input corpus: one file per case in ``cases/``, each with its input and the
exact one-line message a user gets.

Kinds of case:

* ``Istio`` / ``RemoteIstio`` — a spec (and the CR's name). Each case says which path
  refuses it first: ``schema`` is what the API server says when ``kubectl apply`` refuses
  it (checked with the simulated API server's admission against the CRDs with their CEL
  rules, ``crds.crd(kind, cel=True)``, as a 1.25+ server evaluates them; ``deploy/crds/``
  leaves the CEL rules out, see ``federationd.api.crds``); ``status_only``
  says why no CRD schema can express it. ``status`` is the CR's ``ErrorMessage`` when the
  CR gets past the schema anyway (stored before the CRD had the rule, a server older than
  1.25 that ignores CEL rules) — tested for every case, so both paths are. Either way
  nothing applied changes: the desired objects stay those of the last good spec.
  ``test_kubectl_corpus.py`` applies the same cases with kubectl.
* ``Secret`` — the kubeconfig Secret of a RemoteIstio; ``status`` is its ``ErrorMessage``.
* ``Istio2`` — a second Istio next to the managed one.

Each message is one line, the CR status is ReconcileFailed (or Unmanaged), and no value
the case marks ``secret`` appears in it. Connection failures (wrong CA, refused,
unresolvable, 401, 403) need a live server: ``test_connect_corpus.py``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from events import types as ev
from events.types import ClusterName
from federationd.api import crds
from federationd.projections.derive import derive
from federationd.sim import celrules, validate
from federationd.watchers import facts

from ..projections.helpers import MASTER, SEED_000, Log, istio

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))
ROOT = Path(__file__).resolve().parents[2]
REMOTE = "remote-eu"
GOOD_REMOTE: dict[str, Any] = {"enabledServices": [{"name": "istio-pilot"}]}


#: A release that evaluates CEL rules: what ``schema`` says is what its API server says
#: at ``kubectl apply`` with the ``--cel`` CRDs (``deploy/crds/`` has the rest).
CEL_RELEASE = "1.32"


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crds.crd(kind, cel=True)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[arg-type]
    return schema


def _remote_cr(spec: dict[str, Any], *, name: str = REMOTE, generation: int = 1) -> ev.RemoteIstioSpecChanged:
    return ev.RemoteIstioSpecChanged(
        cluster=MASTER, key=f"RemoteIstio/istio-system/{name}", time=1, namespace="istio-system",
        name=name, uid="r-" + name, generation=generation, spec=spec)


def _kubeconfig_ok(name: str = REMOTE) -> ev.KubeconfigObserved:
    return ev.KubeconfigObserved(cluster=MASTER, key=f"Secret/istio-system/{name}", time=1, remote=name,
                                 server="https://r", fingerprint="f")


def _status(log: Log, kind: str, name: str) -> dict[str, Any]:
    st = derive(log.state).statuses[f"{kind}/istio-system/{name}"].status
    assert isinstance(st, dict)
    return st


def _secret(case: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": REMOTE, "namespace": "istio-system", **case.get("metadata", {})}
    data: dict[str, str] = {}
    for key, value in (case.get("data") or {}).items():
        raw = bytes.fromhex(value["hex"]) if isinstance(value, dict) else str(value).encode()
        data[key] = base64.b64encode(raw).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "data": data}


def _check_message(case: dict[str, Any], message: str) -> None:
    assert message == case["status"], message
    assert "\n" not in message
    for secret in case.get("secrets", []):
        assert secret not in message


def _spec_case(case: dict[str, Any]) -> None:
    kind, spec = case["kind"], case["spec"]
    name = case.get("name", "istio" if kind == "Istio" else REMOTE)
    obj = {"apiVersion": "istio.banzaicloud.io/v1beta1", "kind": kind,
           "metadata": {"name": name, "namespace": "istio-system"}, "spec": spec}
    errors = celrules.admit_custom(obj, schema=_schema(kind), release=CEL_RELEASE).errors
    refusal = validate.invalid_message(kind, "istio.banzaicloud.io", name, errors) if errors else ""
    assert ("schema" in case) != ("status_only" in case), "a case is refused at apply, or says why it cannot be"
    if "schema" in case:
        # (the API server's own message quotes the value, as Kubernetes' does)
        assert case["schema"] in refusal, refusal
    else:
        assert not errors, refusal
    log = Log()
    log.add(istio(SEED_000))
    if kind == "Istio":
        before = derive(log.state).clusters["master"]
        log.add(istio(spec, generation=2, name=name) if name == "istio" else istio(spec, name=name))
        after = derive(log.state).clusters["master"]
        st = _status(log, "Istio", name)
    else:
        log.add(_remote_cr(GOOD_REMOTE, name=name), _kubeconfig_ok(name))
        before = derive(log.state).clusters[name]
        log.add(_remote_cr(spec, name=name, generation=2))
        after = derive(log.state).clusters[name]
        st = _status(log, "RemoteIstio", name)
    _check_message(case, st["ErrorMessage"])
    assert st["Status"] == "ReconcileFailed"
    if before.objects:  # nothing applied changes: the last good spec is what stays desired
        assert after.objects == before.objects
    else:
        assert after.hold


def _secret_case(case: dict[str, Any]) -> None:
    log = Log()
    log.add(istio(SEED_000), _remote_cr(GOOD_REMOTE))
    for e in facts.kubeconfig_secret_fact(ClusterName("master"), _secret(case), 1.0):
        log.add(e)
    st = _status(log, "RemoteIstio", REMOTE)
    _check_message(case, st["ErrorMessage"])
    assert st["Status"] != "Available"
    from events.codec import encode  # nothing of the Secret's content enters the log
    for rec in log.records:
        for secret in case.get("secrets", []):
            assert secret.encode() not in encode(rec.event)


def _second_istio_case(case: dict[str, Any]) -> None:
    log = Log()
    log.add(istio(SEED_000), istio(case["spec"], name=case["name"], uid="uid-2"))
    st = _status(log, "Istio", case["name"])
    _check_message(case, st["ErrorMessage"])
    assert st["Status"] == "Unmanaged"
    assert _status(log, "Istio", "istio")["ErrorMessage"] == ""


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input_is_refused_with_its_message(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    assert case.get("description"), "every case says what it is"
    if case["kind"] in ("Istio", "RemoteIstio"):
        _spec_case(case)
    elif case["kind"] == "Secret":
        _secret_case(case)
    elif case["kind"] == "Istio2":
        _second_istio_case(case)
    else:
        raise AssertionError(f"unknown case kind {case['kind']}")


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_the_readme_lists_every_case() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.stem for p in CASES if f"`{p.stem}`" not in readme]
    assert not missing, missing
