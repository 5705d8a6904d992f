"""Membership end to end: the decisions a running daemon applied (join, leave, the
clean-up deadline, finalizer release) are reproduced by a replay of its log at the same
seq; one cluster has one name in the mesh (a duplicate and the master are refused, and
deleting the duplicate touches nothing); a remote that never connected is released at
once on delete."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import msgspec
import yaml

from events.log import EventLog
from federationd.projections.derive import derive
from federationd.projections.state import EMPTY, fold
from federationd.sim import Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .test_e2e import GATEWAY_FEDERATION, _cli
from .test_federation import REMOTE, _get, _join, _networks, _remote_status
from .waiting import wait_for

NS = "istio-system"
CR_API = "istio.banzaicloud.io/v1beta1"
FINALIZER = "federationd.istio.banzaicloud.io/remote-cleanup"


def _secret(name: str, raw: bytes) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {name: base64.b64encode(raw).decode()},
    })


def _remote_istio(name: str) -> str:
    return json.dumps({
        "apiVersion": CR_API, "kind": "RemoteIstio", "metadata": {"name": name, "namespace": NS},
        "spec": {"enabledServices": [{"name": "istio-pilot"}]},
    })


def _cr(fleet: Fleet, name: str) -> dict[str, Any] | None:
    return _get(fleet, "master", CR_API, "RemoteIstio", name, NS)


def _left_behind_events(fleet: Fleet, name: str) -> list[dict[str, Any]]:
    return [
        e for e in fleet["master"].store.list("v1", "Event", NS)
        if e.get("reason") == "RemoteCleanupIncomplete" and e["involvedObject"]["name"] == name
    ]


async def test_replay_reproduces_the_membership_decisions_of_a_running_daemon(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        log = tmp_path / "log.db"
        d = await _join(fleet, daemons, tmp_path, extra=["--remote-cleanup-timeout", "2"])
        await wait_for(lambda: FINALIZER in ((_cr(fleet, REMOTE) or {}).get("metadata") or {}).get("finalizers", []), timeout=15, what="finalizer")
        # leave while unreachable: the clean-up is given up at its deadline
        await fleet[REMOTE].faults.partition(120)
        await kubectl(kc, "delete", "remoteistio", REMOTE, "-n", NS, "--wait=false")
        await wait_for(lambda: _cr(fleet, REMOTE) is None, timeout=60, what="RemoteIstio released after the deadline")
        await wait_for(d.converged, timeout=30)
        history: list[list[Any]] = (await d.debug("membership"))["history"]
        await fleet[REMOTE].faults.heal()
        assert await d.terminate() == 0

    decisions = [m for _, m in history]
    # every kind of decision was taken, and recorded with the seq it was derived at
    assert any(m["connect"].get(REMOTE, {}).get("identify_only") for m in decisions), "identity read first"
    assert any(m["connect"].get(REMOTE, {}).get("member") is True and not m["connect"][REMOTE].get("identify_only") for m in decisions), "join"
    assert any(REMOTE in m["deadlines"] for m in decisions), "leave, with a bounded clean-up"
    removals = [m["remove"][REMOTE] for m in decisions if REMOTE in m["remove"]]
    assert removals and "unreachable" in removals[0] and "istio-citadel" in removals[0], removals
    releases = [m["release"][f"{NS}/{REMOTE}"] for m in decisions if f"{NS}/{REMOTE}" in m["release"]]
    assert releases == [removals[0]] * len(releases) and releases, "released with the left-behind warning"

    # the same decisions, from the log alone, at the same seqs
    wanted = {seq: m for seq, m in history}
    replayed: dict[int, Any] = {}
    events_log = await EventLog.open(str(log))
    try:
        state = EMPTY
        async for record in events_log.read(1):
            state = fold(state, record)
            if record.seq in wanted:
                replayed[record.seq] = msgspec.json.decode(msgspec.json.encode(derive(state).membership))
    finally:
        await events_log.close()
    assert replayed == wanted
    deadline_seq = next(seq for seq, m in history if REMOTE in m["remove"])
    out = json.loads(await _cli("replay", "--log", str(log), "--until", str(deadline_seq), "--membership", "--no-snapshot"))
    assert out == {"seq": deadline_seq, "membership": wanted[deadline_seq]}
    events = await _cli("events", "--log", str(log), "--type", "CleanupDeadlinePassed", "--json")
    assert [json.loads(line)["cluster"] for line in events.splitlines()] == [REMOTE]


async def test_one_cluster_one_identity(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """A second RemoteIstio for a cluster already in the mesh, and one for the master, are
    refused by name; nothing is written under their names; deleting the duplicate cleans
    nothing up on the shared cluster."""
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(d.converged, timeout=30)
        remote = fleet[REMOTE]
        before = remote.requests.snapshot()

        def writes_since() -> dict[str, int]:
            """Mutating requests on the shared cluster since ``before``, by verb and resource
            (a name is announced in meshNetworks only once its identity is read, so a
            refused one changes no cluster's mesh ConfigMap either)."""
            now = remote.requests.snapshot()
            return {
                k: v - before.get(k, 0) for k, v in now.items()
                if v != before.get(k, 0) and k.split()[0] in ("create", "update", "patch", "delete", "deletecollection")
            }

        await kubectl(kc, "apply", "-f", "-", stdin=_secret("remote-dup", remote.kubeconfig_path.read_bytes()))
        await kubectl(kc, "apply", "-f", "-", stdin=_secret("remote-master", fleet["master"].kubeconfig_path.read_bytes()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio("remote-dup"))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio("remote-master"))

        def message(name: str) -> str:
            return str(_remote_status(fleet, name).get("ErrorMessage") or "")

        await wait_for(lambda: f'already in the mesh as RemoteIstio "{REMOTE}"' in message("remote-dup"), timeout=30, what="duplicate refused")
        await wait_for(lambda: 'is the master cluster "master"' in message("remote-master"), timeout=30, what="master refused")
        assert _remote_status(fleet, "remote-dup")["Status"] == "ReconcileFailed"
        out = await kubectl(kc, "get", "remoteistios", "-n", NS)
        assert "already in the mesh" in out and "master cluster" in out, out
        await wait_for(d.converged, timeout=30)
        assert writes_since() == {}
        assert set(_networks(fleet)) == {"master", REMOTE}
        assert _remote_status(fleet)["Status"] == "Available"
        m = (await d.debug("membership"))["membership"]
        assert set(m["refused"]) == {"remote-dup", "remote-master"} and set(m["connect"]) == {REMOTE}
        assert "remote-dup" not in (await d.debug("runtime"))["clusters"]

        # deleting the duplicate: released at once, nothing removed from the shared cluster
        await kubectl(kc, "delete", "remoteistio", "remote-dup", "-n", NS, "--timeout=30s")
        await kubectl(kc, "delete", "remoteistio", "remote-master", "-n", NS, "--timeout=30s")
        await wait_for(d.converged, timeout=30)
        assert writes_since() == {}
        assert _get(fleet, REMOTE, "apps/v1", "Deployment", "istio-citadel", NS) is not None
        assert _remote_status(fleet)["Status"] == "Available"
        assert not _left_behind_events(fleet, "remote-dup")
        assert set(_networks(fleet)) == {"master", REMOTE}
        written = await _cli("events", "--log", str(tmp_path / "log.db"), "--type", "ActuationApplied", "--json")
        assert not [line for line in written.splitlines() if json.loads(line)["cluster"] in ("remote-dup", "remote-master")]
        assert await d.terminate() == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_remote_that_never_connected_is_released_at_once(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Fleet(["master"], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet)
        kc = fleet["master"].kubeconfig_path
        await kubectl(kc, "apply", "-n", NS, "-f", "-", stdin=GATEWAY_FEDERATION)
        cfg = yaml.safe_load(kc.read_text())
        cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{_closed_port()}"
        await kubectl(kc, "apply", "-f", "-", stdin=_secret("remote-x", yaml.safe_dump(cfg).encode()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio("remote-x"))
        d = await start_daemon(daemons, fleet, tmp_path / "log.db", extra=["--remote-cleanup-timeout", "300"])
        await wait_for(lambda: "unreachable" in str(_remote_status(fleet, "remote-x").get("ErrorMessage")), timeout=60, what="remote-x unreachable")
        await wait_for(lambda: FINALIZER in ((_cr(fleet, "remote-x") or {}).get("metadata") or {}).get("finalizers", []), timeout=15, what="finalizer")
        await kubectl(kc, "delete", "remoteistio", "remote-x", "-n", NS, "--wait=false")
        # far below the 300 s clean-up bound: there was nothing to clean up
        await wait_for(lambda: _cr(fleet, "remote-x") is None, timeout=30, what="released at once")
        assert not _left_behind_events(fleet, "remote-x")
        assert "remote remote-x left" in d.stderr()
        assert await d.terminate() == 0
