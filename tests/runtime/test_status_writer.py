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


async def test_a_status_swinging_back_during_a_write_is_written_again() -> None:
    server = _Cluster()
    appended: list[object] = []

    async def append(events: Any) -> None:
        appended.extend(events)

    writer = StatusWriter("master", server, append=append, metrics=Metrics(), events=False)  # type: ignore[arg-type]
    writer.start()
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

    async def append(events: Any) -> None:
        return None

    writer = StatusWriter("master", server, append=append, metrics=Metrics(), events=False)  # type: ignore[arg-type]
    writer.start()
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
