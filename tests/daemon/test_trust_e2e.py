"""The shared root of trust, end to end: a master and two remotes, the daemon as a process.

One fleet and one daemon serve the whole module (the tests run in file order; a test that
breaks something restores it before it ends). What is checked:

* every cluster gets a ``cacerts`` whose CA chains to ONE root, kept once on the master;
* the remotes' citadel signs with it (plug-in CA flags, the Secret mounted, and a
  pod-template hash of the CA's public fingerprint);
* a resync writes nothing;
* no private key, in any form, in the event log's files, ``/metrics`` or the daemon's log;
* a ``cacerts`` federationd did not create, and a malformed root Secret, are reported in
  the CR status and left exactly as they are.
"""

from __future__ import annotations

import base64
import functools
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from cryptography import x509

from federationd import trust
from federationd.sim import Fleet

from .conftest import DaemonProcess, install_crds
from .test_e2e import SEED_000
from .waiting import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

MASTER, EU, US = "master", "remote-eu", "remote-us"
REMOTES = (EU, US)
NS = "istio-system"
CR_API = "istio.banzaicloud.io/v1beta1"


@dataclass
class Mesh:
    fleet: Fleet
    daemon: DaemonProcess
    log: Path


def _secret(fleet: Fleet, cluster: str, name: str) -> dict[str, Any] | None:
    return fleet[cluster].store.get("v1", "Secret", name, NS)


def _status(fleet: Fleet, kind: str, name: str) -> dict[str, Any]:
    cr = fleet[MASTER].store.get(CR_API, kind, name, NS) or {}
    return cr.get("status") or {}


def _pem(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def _cert(secret: dict[str, Any], key: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_pem(secret, key))


def _ours(secret: dict[str, Any] | None) -> bool:
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    return labels.get("app.kubernetes.io/managed-by") == trust.TRUST_MANAGER


def _citadel(fleet: Fleet, cluster: str) -> dict[str, Any]:
    return fleet[cluster].store.get("apps/v1", "Deployment", "istio-citadel", NS) or {}


def _uses_cacerts(fleet: Fleet, cluster: str) -> bool:
    spec = ((_citadel(fleet, cluster).get("spec") or {}).get("template") or {}).get("spec") or {}
    volumes = spec.get("volumes") or []
    return any((v.get("secret") or {}).get("secretName") == "cacerts" for v in volumes)


def _all_available(fleet: Fleet) -> bool:
    return _status(fleet, "Istio", "istio").get("Status") == "Available" and all(
        _status(fleet, "RemoteIstio", r).get("Status") == "Available" for r in REMOTES
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    tmp = tmp_path_factory.mktemp("trust")
    async with Fleet([MASTER, EU, US], directory=tmp / "fleet") as fleet:
        install_crds(fleet)
        store = fleet[MASTER].store
        istio = yaml.safe_load(SEED_000)
        istio["metadata"]["namespace"] = NS
        store.create(istio)
        for r in REMOTES:
            raw = fleet[r].kubeconfig_path.read_bytes()
            store.create({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": r, "namespace": NS},
                "data": {r: base64.b64encode(raw).decode()},
            })
            store.create({
                "apiVersion": CR_API, "kind": "RemoteIstio", "metadata": {"name": r, "namespace": NS},
                "spec": {"enabledServices": [{"name": "istio-pilot"}]},
            })
        log = tmp / "log.db"
        d = DaemonProcess(kubeconfig=fleet[MASTER].kubeconfig_path, log=log)
        await d.start()
        try:
            for c in (MASTER, *REMOTES):
                await wait_for(functools.partial(_uses_cacerts, fleet, c), timeout=40, what=f"citadel of {c} on cacerts")
            await wait_for(lambda: _all_available(fleet), timeout=30, what="every CR Available")
            await wait_for(d.converged, timeout=30, what="converged")
            yield Mesh(fleet=fleet, daemon=d, log=log)
        finally:
            if d.proc is not None and d.proc.returncode is None:
                code = await d.terminate()
                assert code == 0, d.stderr()[-2000:]
            else:
                await d.terminate(signal.SIGKILL)


async def test_every_cluster_chains_to_one_root(mesh: Mesh) -> None:
    fleet = mesh.fleet
    secrets = {c: _secret(fleet, c, "cacerts") for c in (MASTER, *REMOTES)}
    assert all(_ours(s) for s in secrets.values()), secrets.keys()
    # the root is kept once, on the master
    root_secret = _secret(fleet, MASTER, trust.ROOT_SECRET_NAME)
    assert root_secret is not None and _ours(root_secret)
    for r in REMOTES:
        assert _secret(fleet, r, trust.ROOT_SECRET_NAME) is None
    root = _cert(root_secret, trust.CA_CERT)
    # one intermediate per cluster, each signed by the one root ...
    cluster_cas = {c: _cert(s, trust.CA_CERT) for c, s in secrets.items() if s is not None}
    assert len({ca.serial_number for ca in cluster_cas.values()}) == 3
    for c, s in secrets.items():
        assert s is not None
        assert _cert(s, trust.ROOT_CERT) == root, c
        chain = x509.load_pem_x509_certificates(_pem(s, trust.CERT_CHAIN))
        assert chain[0] == cluster_cas[c] and chain[-1] == root
    # ... so a cluster CA of remote-eu verifies against the root remote-us trusts
    us = secrets[US]
    assert us is not None
    cluster_cas[EU].verify_directly_issued_by(_cert(us, trust.ROOT_CERT))
    cluster_cas[MASTER].verify_directly_issued_by(_cert(us, trust.ROOT_CERT))
    # the log knows the public fingerprints, and they are the Secrets' own
    state = await mesh.daemon.debug("state")
    for c, s in secrets.items():
        assert s is not None
        observed = state["ca_secrets"][c][f"{NS}/cacerts"]
        assert observed["fingerprint"] == trust.public_fingerprint(s) and observed["managed"]
        assert state["trust"][c]["root_fingerprint"] == trust.public_fingerprint(root_secret)
        assert not state["trust"][c].get("problem")


async def test_remote_citadel_signs_with_the_shared_root(mesh: Mesh) -> None:
    for r in REMOTES:
        dep = _citadel(mesh.fleet, r)
        template = dep["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert "--self-signed-ca=false" in container["args"]
        assert "--signing-key=/etc/cacerts/ca-key.pem" in container["args"]
        assert "--cert-chain=/etc/cacerts/cert-chain.pem" in container["args"]
        assert {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": True} in container["volumeMounts"]
        assert {"name": "cacerts", "secret": {"secretName": "cacerts", "optional": False}} in template["spec"]["volumes"]
        # a new CA would change this hash, and so restart citadel
        assert template["metadata"]["annotations"].get("federationd.io/config-hash")


async def test_a_resync_writes_nothing(mesh: Mesh) -> None:
    fleet, d = mesh.fleet, mesh.daemon
    await wait_for(d.converged, timeout=30, what="converged")
    before = {c: fleet[c].requests.mutating() for c in (MASTER, *REMOTES)}
    reads = {c: fleet[c].requests.total("get", "secrets") for c in (MASTER, *REMOTES)}
    resyncs = (await d.debug("converged"))["resyncs"]

    async def resynced_twice() -> bool:
        return bool((await d.debug("converged"))["resyncs"] >= resyncs + 2)

    await wait_for(resynced_twice, timeout=15, what="two resyncs")
    await wait_for(d.converged, timeout=30, what="converged")
    # the trust side looked (it read every cacerts again) and wrote nothing anywhere
    for c in (MASTER, *REMOTES):
        assert fleet[c].requests.total("get", "secrets") > reads[c], c
    after = {c: fleet[c].requests.mutating() for c in (MASTER, *REMOTES)}
    assert after == before, {c: fleet[c].requests.snapshot() for c in (MASTER, *REMOTES)}


async def test_no_private_key_in_the_log_metrics_or_daemon_log(mesh: Mesh) -> None:
    fleet, d = mesh.fleet, mesh.daemon
    keys: list[bytes] = []
    for c, name in [(c, "cacerts") for c in (MASTER, *REMOTES)] + [(MASTER, trust.ROOT_SECRET_NAME)]:
        s = _secret(fleet, c, name)
        assert s is not None
        encoded = s["data"][trust.CA_KEY]
        pem = base64.b64decode(encoded)
        assert b"PRIVATE KEY" in pem
        body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))
        keys += [encoded.encode(), body, body[:64]]
    status, metrics = await d.get("/metrics")
    assert status == 200
    files = sorted(mesh.log.parent.glob(mesh.log.name + "*"))  # the database, its WAL, …
    assert files
    sources = {str(p): p.read_bytes() for p in files}
    sources["/metrics"] = metrics.encode()
    sources["stderr"] = d.stderr_path.read_bytes()
    sources["/debug/state"] = json.dumps(await d.debug("state")).encode()
    for where, data in sources.items():
        assert b"PRIVATE KEY" not in data, where
        for k in keys:
            assert k not in data, where
    assert b"TrustObserved" in b"".join(sources[str(p)] for p in files)  # the facts are there


async def test_a_foreign_cacerts_is_reported_and_left_alone(mesh: Mesh) -> None:
    fleet, d = mesh.fleet, mesh.daemon
    store = fleet[US].store
    ours = _secret(fleet, US, "cacerts")
    assert ours is not None
    kind = store._kind_of(ours)
    store.delete(kind, NS, "cacerts")
    foreign = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
        "data": {k: ours["data"][k] for k in (trust.CA_CERT, trust.ROOT_CERT, trust.CERT_CHAIN)},
    }
    store.create(foreign)
    await wait_for(
        lambda: "not created by federationd" in str(_status(fleet, "RemoteIstio", US).get("ErrorMessage")),
        timeout=20, what="the foreign cacerts reported",
    )
    assert _status(fleet, "RemoteIstio", US)["Status"] == "ReconcileFailed"
    assert _status(fleet, "RemoteIstio", EU)["Status"] == "Available"
    await wait_for(d.converged, timeout=30, what="converged")
    left = _secret(fleet, US, "cacerts")
    assert left is not None and not _ours(left) and left["data"] == foreign["data"]
    assert not _uses_cacerts(fleet, US)  # citadel is not pointed at a CA that is not ours
    # the user removes it: federationd places its own again and the remote recovers
    store.delete(kind, NS, "cacerts")
    await wait_for(lambda: _ours(_secret(fleet, US, "cacerts")), timeout=20, what="cacerts placed again")
    await wait_for(lambda: _uses_cacerts(fleet, US), timeout=20, what="citadel on cacerts again")
    await wait_for(lambda: _all_available(fleet), timeout=30, what="every CR Available")


async def test_a_malformed_root_is_reported_and_nothing_is_replaced(mesh: Mesh) -> None:
    fleet, d = mesh.fleet, mesh.daemon
    store = fleet[MASTER].store
    root = _secret(fleet, MASTER, trust.ROOT_SECRET_NAME)
    assert root is not None
    cacerts_before = {c: _secret(fleet, c, "cacerts") for c in (MASTER, *REMOTES)}
    broken = json.loads(json.dumps(root))
    broken["data"][trust.CA_KEY] = base64.b64encode(b"-----BEGIN RSA PRIVATE KEY-----\nnope\n").decode()
    store.update(broken)
    await wait_for(
        lambda: trust.CA_KEY in str(_status(fleet, "Istio", "istio").get("ErrorMessage")),
        timeout=20, what="the malformed root reported on the Istio",
    )
    message = _status(fleet, "Istio", "istio")["ErrorMessage"]
    assert trust.ROOT_SECRET_NAME in message and "nope" not in message
    assert _status(fleet, "Istio", "istio")["Status"] == "ReconcileFailed"
    await wait_for(d.converged, timeout=30, what="converged")
    kept = _secret(fleet, MASTER, trust.ROOT_SECRET_NAME)
    assert kept is not None and kept["data"] == broken["data"]
    for c, s in cacerts_before.items():
        now = _secret(fleet, c, "cacerts")
        assert s is not None and now is not None and now["data"] == s["data"], c
    # repaired by a person: everything is Available again, still on the same root
    repaired = _secret(fleet, MASTER, trust.ROOT_SECRET_NAME)
    assert repaired is not None
    repaired["data"] = root["data"]
    store.update(repaired)
    await wait_for(lambda: _all_available(fleet), timeout=30, what="every CR Available")
    for c, s in cacerts_before.items():
        now = _secret(fleet, c, "cacerts")
        assert s is not None and now is not None and now["data"] == s["data"], c


async def test_a_leaving_remote_loses_its_key(mesh: Mesh) -> None:
    fleet, d = mesh.fleet, mesh.daemon
    root = _secret(fleet, MASTER, trust.ROOT_SECRET_NAME)
    store = fleet[MASTER].store
    cr = store.get(CR_API, "RemoteIstio", EU, NS)
    assert cr is not None
    store.delete(store._kind_of(cr), NS, EU)
    await wait_for(lambda: "remote remote-eu left" in d.stderr(), timeout=40, what="remote-eu left")
    # a cluster outside the mesh must not keep a CA key the mesh trusts
    assert _secret(fleet, EU, "cacerts") is None
    assert _citadel(fleet, EU) == {}
    # the others keep theirs, under the same root
    assert _secret(fleet, MASTER, trust.ROOT_SECRET_NAME) == root
    assert _ours(_secret(fleet, US, "cacerts"))
    await wait_for(d.converged, timeout=30, what="converged")
    assert _status(fleet, "RemoteIstio", US)["Status"] == "Available"
