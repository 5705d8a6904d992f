"""No credential the fleet holds ever shows up anywhere federationd writes or serves.

A distinctive value is planted in every credential: the remote's kubeconfig token, the
tokens of kubeconfigs that fail in every way the bad-input corpus knows (exec plugin,
garbage, 401, unresolvable host, wrong CA, TLS verification disabled), an embedded
client key, the mesh's root CA key (made by federationd itself) and a lightstep access
token in the Istio spec. After a run that goes through those error paths, the event log
(with its WAL and snapshots), the daemon's stderr, ``/metrics``, every ``/debug/``
endpoint, the Kubernetes Events and the CR statuses on every cluster are scanned for
each value, raw and base64-encoded at every alignment.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from federationd.sim import Fleet
from federationd.sim.tlscert import ServingCert

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .test_e2e import SEED_000
from .test_federation import REMOTE, _get, _remote_status
from .waiting import wait_for

ISTIO = "istio.banzaicloud.io/v1beta1"
LIGHTSTEP = "PLANTED-lightstep-7d1c0e5b9a"


def _variants(secret: str) -> list[bytes]:
    """The value, and its base64 forms at the three byte alignments (a leak of a whole
    base64 blob holding it contains one of them)."""
    raw = secret.encode()
    out = [raw]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw)
        skip = (pad * 4 + 2) // 3 + 1  # characters that depend on the padding
        out.append(enc[skip:-4] if len(enc) > skip + 8 else enc)
    return out


def _kubeconfig(server: str, user: dict[str, Any], *, ca: bytes | None = None, insecure: bool = False) -> str:
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    })


def _secret(name: str, value: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "istio-system"},
                       "data": {name: base64.b64encode(value.encode()).decode()}})


def _remote_cr(name: str) -> str:
    return json.dumps({"apiVersion": ISTIO, "kind": "RemoteIstio", "metadata": {"name": name, "namespace": "istio-system"},
                       "spec": {"enabledServices": [{"name": "istio-pilot"}]}})


async def test_no_credential_leaks_anywhere(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        master_server = yaml.safe_load(kc.read_text())["clusters"][0]["cluster"]["server"]
        master_ca = fleet["master"].ca_pem
        client_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        planted: dict[str, str] = {
            "remote token": fleet[REMOTE].token,
            "master token": fleet["master"].token,
            "lightstep": LIGHTSTEP,
            "client key": "".join(client_key.decode().splitlines()[1:3]),
        }
        bad: dict[str, str] = {
            "bad-exec": _kubeconfig(master_server, {"exec": {"command": "sh", "args": ["-c", "echo PLANTED-exec-41b2"]}}, ca=master_ca),
            "bad-garbage": "PLANTED-garbage-9e3f: [not: a: kubeconfig",
            "bad-401": _kubeconfig(master_server, {"token": "PLANTED-401-c8d7a6"}, ca=master_ca),
            "bad-dns": _kubeconfig("https://no-such-cluster.invalid:6443", {"token": "PLANTED-dns-5a4b"}, ca=master_ca),
            "bad-ca": _kubeconfig(master_server, {"token": "PLANTED-wrongca-11aa"}, ca=ServingCert().ca_pem),
            "bad-insecure": _kubeconfig(master_server, {"token": "PLANTED-insecure-2b2b"}, insecure=True),
            "bad-clientkey": _kubeconfig("https://127.0.0.1:1", {
                "client-certificate-data": base64.b64encode(master_ca).decode(),
                "client-key-data": base64.b64encode(client_key).decode()}, ca=master_ca),
        }
        planted |= {f"{n} credential": s for n, s in (
            ("exec", "PLANTED-exec-41b2"), ("garbage", "PLANTED-garbage-9e3f"), ("401", "PLANTED-401-c8d7a6"),
            ("dns", "PLANTED-dns-5a4b"), ("ca", "PLANTED-wrongca-11aa"), ("insecure", "PLANTED-insecure-2b2b"))}

        install_crds(fleet)
        istio = yaml.safe_load(SEED_000)
        istio["spec"]["tracing"] = {"tracer": "lightstep", "lightstep": {"address": "lightstep:8080", "accessToken": LIGHTSTEP}}
        await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=json.dumps(istio))
        await kubectl(kc, "apply", "-f", "-", stdin=_secret(REMOTE, fleet[REMOTE].kubeconfig_path.read_text()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_cr(REMOTE))
        for name, value in bad.items():
            await kubectl(kc, "apply", "-f", "-", stdin=_secret(name, value))
            await kubectl(kc, "apply", "-f", "-", stdin=_remote_cr(name))
        # a second Istio with its own token: ignored, and said so
        second = {**istio, "metadata": {"name": "istio-2"}}
        second["spec"] = {**istio["spec"], "tracing": {"tracer": "lightstep", "lightstep": {"address": "l:1", "accessToken": LIGHTSTEP + "-2"}}}
        await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=json.dumps(second))
        planted["lightstep 2"] = LIGHTSTEP + "-2"

        d = await start_daemon(daemons, fleet, tmp_path / "log.db", extra=["--snapshot-every", "20"])
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available", timeout=150, what="the good remote Available")
        for name in bad:
            await wait_for(lambda n=name: bool(_remote_status(fleet, n).get("ErrorMessage")), timeout=60, what=f"{name} says why")  # type: ignore[misc]
        messages = {n: _remote_status(fleet, n)["ErrorMessage"] for n in bad}
        assert messages["bad-dns"] == "cluster unreachable: could not resolve host no-such-cluster.invalid", messages
        assert messages["bad-401"].startswith("cluster refused the kubeconfig's credential"), messages
        assert "exec" in messages["bad-exec"] and "insecure" in messages["bad-insecure"], messages

        # the root CA federationd made: its key is a credential too
        roots = [s for s in fleet["master"].store.list("v1", "Secret") if "ca-key.pem" in (s.get("data") or {})]
        assert roots, "the mesh's CA key is on the master"
        for s in roots:
            key_pem = base64.b64decode(s["data"]["ca-key.pem"]).decode()
            planted[f"CA key {s['metadata']['name']}"] = "".join(key_pem.splitlines()[1:3])

        # what is served
        served: dict[str, bytes] = {}
        for path in ("/metrics", "/healthz", "/readyz", "/debug/"):
            served[path] = (await d.get(path))[1].encode()
        for endpoint in json.loads(served["/debug/"])["endpoints"]:
            served[endpoint] = (await d.get(endpoint))[1].encode()
        # what the clusters hold from federationd: Events and CR statuses
        for c in ("master", REMOTE):
            store = fleet[c].store
            served[f"{c} events"] = json.dumps(store.list("v1", "Event")).encode()
        for kind in ("Istio", "RemoteIstio"):
            served[f"{kind} statuses"] = json.dumps([o.get("status") for o in fleet["master"].store.list(ISTIO, kind)]).encode()
        assert await d.terminate() == 0
        # what is written: the log, its WAL and snapshots, stderr
        def written() -> dict[str, bytes]:
            return {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.is_file()}

        served |= await asyncio.to_thread(written)
        assert any(n.startswith("log.db") for n in served) and "log.d.stderr" in served

        leaks = [
            f"{what} in {where}"
            for what, secret in planted.items()
            for where, blob in served.items()
            if any(v in blob for v in _variants(secret))
        ]
        assert not leaks, leaks
        assert _get(fleet, "master", ISTIO, "Istio", "istio-2", "istio-system") is not None

