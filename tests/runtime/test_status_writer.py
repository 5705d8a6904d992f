"""The status writer never leaves a CR showing an older status than the one derived.

The race it must survive: a worker is writing status A (its request in flight) when
the derivation swings back to status B, the one the CR showed before. B equals what the
writer last recorded as shown, yet A is about to overwrite it: B must still be written
once A lands. (Seen as a RemoteIstio left at Reconciling after its cluster was Available.)
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from federationd.actuators.client import NotLeading
from federationd.actuators.status import StatusWriter
from federationd.metrics import Metrics
from federationd.projections.derive import DesiredStatus
from tests.runtime.conftest import wait_for


class _Cluster:
    """One RemoteIstio on a server; a status write can be held in flight."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.hold = asyncio.Event()
        self.hold.set()
        self.gets = 0
        self.started = 0
        self.patches: list[str] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        return {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": name},
                "status": copy.deepcopy(self.status)}

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any], *, apply: bool) -> dict[str, Any]:
        self.started += 1
        await self.hold.wait()
        self.status = copy.deepcopy(status)
        self.patches.append(str(status["Status"]))
        return {}


def _desired(value: str) -> dict[str, DesiredStatus]:
    st = DesiredStatus(kind="RemoteIstio", cluster="master", namespace="istio-system", name="remote-eks",
                       status={"Status": value, "GatewayAddress": ["35.1.0.1"]}, reasons=())
    return {"RemoteIstio/istio-system/remote-eks": st}


def _started(server: Any, *, events: bool = False, appended: list[object] | None = None) -> StatusWriter:
    """A running status writer for ``server``, appending to ``appended`` (or nowhere)."""
    into = [] if appended is None else appended

    async def append(facts: Any) -> None:
        into.extend(facts)

    writer = StatusWriter("master", server, append=append, metrics=Metrics(), events=events)
    writer.start()
    return writer


async def test_a_status_swinging_back_during_a_write_is_written_again() -> None:
    server = _Cluster()
    appended: list[object] = []
    writer = _started(server, appended=appended)
    try:
        writer.set_desired(_desired("Available"))
        await wait_for(writer.idle, what="Available written")
        assert server.status["Status"] == "Available"

        server.hold.clear()  # the next write stays in flight
        writer.set_desired(_desired("Reconciling"))
        await wait_for(lambda: server.started == 2, what="the Reconciling write under way")
        writer.set_desired(_desired("Available"))  # what the CR shows, by the writer's record
        server.hold.set()

        await wait_for(writer.idle, what="the writer idle")
        assert server.status["Status"] == "Available", server.patches
        assert server.patches == ["Available", "Reconciling", "Available"]
    finally:
        await writer.stop()


async def test_an_unchanged_status_sends_nothing() -> None:
    server = _Cluster()

    writer = _started(server)
    try:
        writer.set_desired(_desired("Available"))
        await wait_for(writer.idle, what="Available written")
        gets = server.gets
        for _ in range(3):
            writer.set_desired(_desired("Available"))  # a new, equal object each derivation
        await wait_for(writer.idle, what="idle again")
        assert server.gets == gets and server.started == 1 and server.patches == ["Available"]
    finally:
        await writer.stop()


def _conditioned(value: str, at: str) -> dict[str, DesiredStatus]:
    ok = "True" if value == "Available" else "False"
    st = DesiredStatus(kind="RemoteIstio", cluster="master", namespace="istio-system", name="remote-eks",
                       status={"Status": value, "GatewayAddress": ["35.1.0.1"], "conditions": [
                           {"type": "Reconciled", "status": ok, "reason": value, "lastTransitionTime": at},
                           {"type": "Available", "status": ok, "reason": value, "lastTransitionTime": at},
                       ]}, reasons=())
    return {"RemoteIstio/istio-system/remote-eks": st}


def _times(status: dict[str, Any]) -> list[str]:
    return [c["lastTransitionTime"] for c in status["conditions"]]


async def test_a_condition_keeps_its_transition_time_while_its_status_does_not_change() -> None:
    """apimachinery's rule (meta.SetStatusCondition): only a change of a condition's status
    moves its lastTransitionTime. A status derived anew with a later time and nothing else
    changed (a Reconciling the CR never showed, superseded before it was written) is not
    a write; a real transition is, with its own time; a restarted writer reads the CR and
    applies the same rule."""
    server = _Cluster()

    async def append(events: Any) -> None:
        return None

    def writer() -> StatusWriter:
        return StatusWriter("master", server, append=append, metrics=Metrics(), events=False)  # type: ignore[arg-type]

    w = writer()
    w.start()
    try:
        w.set_desired(_conditioned("Available", "2026-01-01T00:00:01Z"))
        await wait_for(w.idle, what="Available written")
        w.set_desired(_conditioned("Available", "2026-01-01T00:00:09Z"))
        await wait_for(w.idle, what="idle again")
        assert server.patches == ["Available"] and _times(server.status) == ["2026-01-01T00:00:01Z"] * 2

        w.set_desired(_conditioned("Reconciling", "2026-01-01T00:00:10Z"))
        await wait_for(w.idle, what="Reconciling written")
        w.set_desired(_conditioned("Available", "2026-01-01T00:00:11Z"))
        await wait_for(w.idle, what="Available written again")
        assert server.patches == ["Available", "Reconciling", "Available"]
        assert _times(server.status) == ["2026-01-01T00:00:11Z"] * 2
    finally:
        await w.stop()

    w = writer()  # a restart: what the CR shows is read, not remembered
    w.start()
    try:
        w.set_desired(_conditioned("Available", "2026-01-01T00:00:30Z"))
        await wait_for(w.idle, what="the restarted writer idle")
        assert server.gets >= 2 and server.patches[-1] == "Available" and len(server.patches) == 3
        assert _times(server.status) == ["2026-01-01T00:00:11Z"] * 2
        # a change elsewhere in the status is written, the times still kept
        changed = _conditioned("Available", "2026-01-01T00:00:31Z")
        next(iter(changed.values())).status["GatewayAddress"] = ["35.1.0.2"]
        w.set_desired(changed)
        await wait_for(w.idle, what="the new address written")
        assert len(server.patches) == 4 and server.status["GatewayAddress"] == ["35.1.0.2"]
        assert _times(server.status) == ["2026-01-01T00:00:11Z"] * 2
    finally:
        await w.stop()


class _Fleet(_Cluster):
    """Several RemoteIstios; each write is recorded as (name, Status)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[str, str]] = []

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str,
                           status: dict[str, Any], *, apply: bool) -> dict[str, Any]:
        self.started += 1
        await self.hold.wait()
        self.written.append((name, str(status["Status"])))
        return {"apiVersion": api_version, "kind": kind, "metadata": {"namespace": namespace, "name": name}}


def _fleet(values: dict[str, tuple[str, str]]) -> dict[str, DesiredStatus]:
    return {
        f"RemoteIstio/istio-system/{name}": DesiredStatus(
            kind="RemoteIstio", cluster="master", namespace="istio-system", name=name,
            status={"Status": value, "GatewayAddress": [ip]}, reasons=(),
        )
        for name, (value, ip) in values.items()
    }


async def test_a_cluster_becoming_available_is_written_before_others_reconciling() -> None:
    """A gateway change on a joining remote rewrites every remote's ConfigMap, so every
    remote is briefly Reconciling: the joining remote's Available goes first."""
    server = _Fleet()

    writer = _started(server)
    names = ("remote-a", "remote-b", "remote-c", "remote-new")
    try:
        writer.set_desired(_fleet({n: ("Available", "35.1.0.1") for n in names[:3]} | {"remote-new": ("Reconciling", "")}))
        await wait_for(writer.idle, what="the first statuses written")
        server.written.clear()
        server.hold.clear()  # the next write stays in flight while the others queue
        writer.set_desired(_fleet({"remote-a": ("Reconciling", "35.1.0.1"), "remote-b": ("Available", "35.1.0.1"),
                                   "remote-c": ("Available", "35.1.0.1"), "remote-new": ("Reconciling", "")}))
        await wait_for(lambda: server.started == 5, what="remote-a's Reconciling in flight")
        writer.set_desired(_fleet({"remote-a": ("Reconciling", "35.1.0.1"), "remote-b": ("Reconciling", "35.1.0.1"),
                                   "remote-c": ("Reconciling", "35.1.0.1"), "remote-new": ("Available", "35.1.0.9")}))
        server.hold.set()
        await wait_for(writer.idle, what="every status written")
        assert server.written == [
            ("remote-a", "Reconciling"), ("remote-new", "Available"), ("remote-b", "Reconciling"), ("remote-c", "Reconciling"),
        ]
    finally:
        await writer.stop()


async def test_a_slow_event_holds_no_status_back_and_events_stay_in_order() -> None:
    """A transition Event is recorded beside the status writes: the next CR's status
    does not wait for it, and one CR's Events are recorded in the order of its statuses."""
    server = _Fleet()
    events: list[tuple[str, str]] = []
    release = asyncio.Event()

    async def create_event(cr: dict[str, Any], *, reason: str, message: str, type: str) -> dict[str, Any]:
        if cr["metadata"]["name"] == "remote-a" and reason == "Reconciling":
            await release.wait()  # the first Event of remote-a is slow
        events.append((cr["metadata"]["name"], reason))
        return {}

    server.create_event = create_event  # type: ignore[attr-defined]

    writer = _started(server, events=True)
    try:
        writer.set_desired(_fleet({"remote-a": ("Reconciling", "35.1.0.1")}))
        await wait_for(lambda: ("remote-a", "Reconciling") in server.written, what="remote-a's status")
        writer.set_desired(_fleet({"remote-a": ("Available", "35.1.0.1"), "remote-b": ("Available", "35.1.0.2")}))
        await wait_for(lambda: len(server.written) == 3, what="both statuses written, the slow Event pending")
        assert events == [("remote-b", "Available")]
        assert not writer.idle()  # an Event still to record
        release.set()
        await wait_for(writer.idle, what="every Event recorded")
        assert [e for e in events if e[0] == "remote-a"] == [("remote-a", "Reconciling"), ("remote-a", "Available")]
    finally:
        await writer.stop()


async def test_a_brief_reconciling_of_an_available_cr_is_not_written(monkeypatch: Any) -> None:
    """A CR shown Available shows Reconciling only when it lasts RECONCILING_GRACE: a
    gateway change rewrites every remote's ConfigMap, which is not news on each."""
    from federationd.actuators import status as status_module

    monkeypatch.setattr(status_module, "RECONCILING_GRACE", 0.2)
    server = _Cluster()

    writer = _started(server)
    try:
        writer.set_desired(_desired("Available"))
        await wait_for(writer.idle, what="Available written")
        writer.set_desired(_desired("Reconciling"))
        writer.set_desired(_desired("Available"))  # back before the grace ran out
        await wait_for(lambda: not writer.queue._waiting and not len(writer.queue), what="the grace over")
        assert server.patches == ["Available"]
        writer.set_desired(_desired("Reconciling"))  # and this one lasts
        assert not writer.idle()
        await wait_for(writer.idle, what="Reconciling written")
        assert server.patches == ["Available", "Reconciling"]
    finally:
        await writer.stop()


async def test_a_status_write_refused_once_leadership_is_lost_is_no_failure() -> None:
    """The daemon refuses a write held at its gate while it stopped leading
    (``NotLeading``, raised before anything is sent): the writer records no failure,
    retries nothing while paused, and writes the status once it leads again."""
    server = _Cluster()
    refuse = [False]
    patch = server.patch_status

    async def gated(*args: Any, **kw: Any) -> dict[str, Any]:
        server.started += 1
        await server.hold.wait()
        if refuse[0]:
            raise NotLeading("not sent: this process no longer leads")
        server.started -= 1
        return await patch(*args, **kw)

    server.patch_status = gated  # type: ignore[method-assign]
    appended: list[object] = []
    writer = _started(server, appended=appended)
    try:
        server.hold.clear()
        writer.set_desired(_desired("Available"))
        await wait_for(lambda: server.started == 1, what="the write held")
        writer.pause()
        refuse[0] = True
        server.hold.set()
        await wait_for(lambda: not writer.queue.processing() and not len(writer.queue), what="the refusal handled")
        assert server.patches == [] and appended == [] and server.started == 1
        refuse[0] = False
        writer.start()
        await wait_for(writer.idle, what="the status written by the leader again")
        assert server.patches == ["Available"]
        assert [type(e).__name__ for e in appended] == ["ActuationApplied"]
    finally:
        await writer.stop()
