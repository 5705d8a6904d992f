"""Watches over HTTP/2: every watch of a cluster on one connection when the server offers
``h2`` (the simulated fleet does, as kube-apiserver does), on connections of their own
over HTTP/1.1 when it does not (the fake API server), and the stream life cycle between:
a closed watch resets its stream, flow control lets more than a window through, a lost
connection fails every stream and the watches resume on a new one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from federationd.clusters import ClusterClient, ClusterState, connect
from federationd.clusters.http2 import STREAM_WINDOW
from federationd.metrics import Metrics
from federationd.sim import Fleet
from federationd.watchers.reflector import Reflector
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi
from tests.runtime.test_sim import FAST, NS, ROOT_CA, Recorder, cm

KINDS = (("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
         ("apps/v1", "Deployment"), ("rbac.authorization.k8s.io/v1", "Role"))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with Fleet(["master"], directory=tmp_path, bookmark_interval=0.1,
                     lb_delay=0.02, ready_delay=0.02) as fleet:
        fleet["master"].store.create({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NS}})
        yield fleet


@pytest.fixture
async def sim(fleet: Fleet, metrics: Metrics) -> AsyncIterator[ClusterClient]:
    c = await connect(fleet["master"].kubeconfig, name="master", metrics=metrics,
                      request_timeout=5.0)
    yield c
    await c.close()


def _connections_to(port: int) -> int:
    """Established TCP connections from this process's clients to 127.0.0.1:``port``
    (the emulator runs in this process too: its accepted ends have ``port`` as the
    local one)."""
    n = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            n += 1
    return n


def _reflectors(client: ClusterClient, recs: dict[str, Recorder]) -> list[Reflector]:
    out = []
    for api_version, kind in KINDS:
        rec = recs.setdefault(kind, Recorder())
        out.append(Reflector(client, api_version=api_version, kind=kind, namespace=NS,
                             on_upsert=rec.upsert, on_delete=rec.delete, backoff=FAST))
    return out


def _obj(api_version: str, kind: str, name: str) -> dict[str, Any]:
    o: dict[str, Any] = {"apiVersion": api_version, "kind": kind,
                         "metadata": {"name": name, "namespace": NS}}
    if kind == "Service":
        o["spec"] = {"ports": [{"port": 80}]}
    elif kind == "Deployment":
        o["spec"] = {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    return o


async def test_every_watch_of_a_cluster_shares_one_http2_connection(
        fleet: Fleet, sim: ClusterClient) -> None:
    recs: dict[str, Recorder] = {}
    reflectors = _reflectors(sim, recs)
    for r in reflectors:
        r.start()
    store = fleet["master"].store
    try:
        await wait_for(lambda: all(r.synced.is_set() for r in reflectors)
                       and store.watcher_count() >= len(KINDS), within=10)
        assert sim._h2 is not None and not sim._h2.refused
        for api_version, kind in KINDS:
            store.create(_obj(api_version, kind, "x"))
        await wait_for(lambda: all(("upsert", "x") in rec.events for rec in recs.values()),
                       within=10, what="an event of every kind")
        # six watches (and the lists before them), one connection
        assert sim._h2.dials == 1 and sim._h2.streams == len(KINDS)
        assert _connections_to(fleet["master"].port) == 1
    finally:
        for r in reflectors:
            await r.stop()
    # a stopped watch resets its stream and the server ends its side of it
    await wait_for(lambda: store.watcher_count() == 0, what="the server's watches to end")
    assert sim._h2.streams == 0


async def test_more_than_a_stream_window_arrives_whole(fleet: Fleet, sim: ClusterClient) -> None:
    store = fleet["master"].store
    value = "v" * 8000
    n = STREAM_WINDOW // 8000 * 2 + 10  # over two stream windows of initial events
    for i in range(n):
        store.create(cm(f"big-{i:04d}", value=value))
    names = set()
    async with sim.stream(f"/api/v1/namespaces/{NS}/configmaps",
                          query={"watch": True, "timeoutSeconds": 30},
                          read_timeout=10) as resp:
        assert resp.status == 200
        while len(names) < n:
            line = await resp.readline()
            assert line, "the watch ended early"
            obj = json.loads(line)["object"]
            if obj["metadata"]["name"] != ROOT_CA:
                assert obj["data"]["value"] == value
                names.add(obj["metadata"]["name"])
    assert len(names) == n


async def test_a_lost_connection_fails_its_watches_and_they_resume_on_a_new_one(
        fleet: Fleet, sim: ClusterClient) -> None:
    recs: dict[str, Recorder] = {}
    reflectors = _reflectors(sim, recs)[:3]
    for r in reflectors:
        r.start()
    c = fleet["master"]
    try:
        await wait_for(lambda: all(r.synced.is_set() for r in reflectors)
                       and c.store.watcher_count() >= 3, within=10)
        assert sim._h2 is not None and sim._h2.dials == 1
        await c.faults.partition(0.3)
        await c.faults.heal()
        c.store.create(cm("after"))
        await wait_for(lambda: ("upsert", "after") in recs["ConfigMap"].events, within=10)
        await wait_for(lambda: c.store.watcher_count() >= 3, within=10)
        assert sim._h2.dials == 2 and sim._h2.streams == 3
    finally:
        for r in reflectors:
            await r.stop()


async def test_a_server_without_http2_gets_each_watch_over_http1(
        api: FakeApi, metrics: Metrics) -> None:
    client = await connect(api.kubeconfig(), name="fake", metrics=metrics, request_timeout=5.0)
    try:
        api.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "a", "namespace": "default"}})
        recs = [Recorder(), Recorder()]
        reflectors = [Reflector(client, api_version="v1", kind="ConfigMap", namespace="default",
                                on_upsert=rec.upsert, on_delete=rec.delete, backoff=FAST)
                      for rec in recs]
        for r in reflectors:
            r.start()
        await wait_for(lambda: all(("upsert", "a") in rec.events for rec in recs))
        assert client._h2 is not None and client._h2.refused
        # asked once, then never again
        assert client._h2.dials == 1
        for r in reflectors:
            await r.stop()
    finally:
        await client.close()


async def test_without_http2_each_watch_has_a_connection_of_its_own(
        fleet: Fleet, metrics: Metrics) -> None:
    client = await connect(fleet["master"].kubeconfig, name="master", metrics=metrics,
                           request_timeout=5.0, http2=False)
    try:
        assert client._h2 is None
        recs: dict[str, Recorder] = {}
        reflectors = _reflectors(client, recs)[:3]
        for r in reflectors:
            r.start()
        try:
            await wait_for(lambda: all(r.synced.is_set() for r in reflectors)
                           and fleet["master"].store.watcher_count() >= 3, within=10)
            fleet["master"].store.create(cm("h1"))
            await wait_for(lambda: ("upsert", "h1") in recs["ConfigMap"].events)
            # three watches held open: three HTTP/1.1 connections at least
            assert _connections_to(fleet["master"].port) >= 3
        finally:
            for r in reflectors:
                await r.stop()
    finally:
        await client.close()


async def test_after_the_servers_goaway_the_next_request_dials_again(
        fleet: Fleet, sim: ClusterClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from federationd.sim import h2serve

    # kube-apiserver closes a connection idle for 90 s with GOAWAY; here 0.2 s, read
    # when a connection starts
    monkeypatch.setattr(h2serve, "IDLE_TIMEOUT", 0.2)
    assert (await sim.server_version()).startswith("v1.")
    assert sim._h2 is not None and sim._h2.dials == 1
    await wait_for(lambda: _connections_to(fleet["master"].port) == 0,
                   what="the idle connection to be closed")
    assert (await sim.server_version()).startswith("v1.")
    assert sim._h2.dials == 2 and sim.health.state is ClusterState.CONNECTED


async def test_a_request_the_going_away_connection_never_delivered_is_sent_again(
        fleet: Fleet, sim: ClusterClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from federationd.clusters import http2

    assert (await sim.server_version()).startswith("v1.")
    start = http2._Connection.start
    refused: list[int] = []

    def going_away(self: http2._Connection, *args: Any, **kw: Any) -> http2.H2Stream:
        if not refused:
            # what a GOAWAY naming a lower stream does to a request in flight
            refused.append(1)
            self.usable = False
            raise http2.NotProcessed("the server is going away")
        return start(self, *args, **kw)

    monkeypatch.setattr(http2._Connection, "start", going_away)
    created = await sim.request("POST", f"/api/v1/namespaces/{NS}/configmaps", body=cm("once"))
    assert created["metadata"]["name"] == "once" and refused == [1]
    assert sim._h2 is not None and sim._h2.dials == 2
    # not a failure of the cluster: nothing was counted against it
    assert sim.health.state is ClusterState.CONNECTED
    assert sim.health.snapshot().consecutive_failures == 0
