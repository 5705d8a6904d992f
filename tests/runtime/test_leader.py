"""Lease-based leader election: one leader among two, fast handover on release, takeover
after expiry when the leader dies, stepping down when renewals fail."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from federationd.actuators.client import KubeClient
from federationd.clusters import ClusterClient
from federationd.leader import LeaderElector
from federationd.metrics import Metrics
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi, Fault

SHORT = {"lease_duration": 0.8, "renew_deadline": 0.5, "retry_period": 0.1}


def elector(client: ClusterClient, identity: str, log: list[str], **kw: Any) -> LeaderElector:
    return LeaderElector(
        KubeClient(client), name="federationd", namespace="istio-system", identity=identity,
        on_started_leading=lambda: log.append(f"{identity}+"),
        on_stopped_leading=lambda: log.append(f"{identity}-"), **{**SHORT, **kw})


async def test_one_leader_and_release_hands_over_at_once(client: ClusterClient, api: FakeApi) -> None:
    log: list[str] = []
    ma, mb = Metrics(), Metrics()
    a = elector(client, "a", log, metrics=ma)
    b = elector(client, "b", log, metrics=mb)
    a.start()
    await wait_for(lambda: a.is_leader)
    b.start()
    await wait_for(lambda: b.holder == "a")
    # Several renew periods pass: still exactly one leader.
    renewals = api.requests.get("update", 0)
    await wait_for(lambda: api.requests.get("update", 0) >= renewals + 3)
    assert a.is_leader and not b.is_leader
    lease = api.objects[("leases", "istio-system", "federationd")]["spec"]
    assert lease["holderIdentity"] == "a" and lease["leaseDurationSeconds"] == 1
    assert 'leader_election_master_status{name="federationd"} 1.0' in ma.exposition().decode()
    assert 'leader_election_master_status{name="federationd"} 0.0' in mb.exposition().decode()

    started = time.monotonic()
    await a.stop()
    assert not a.is_leader and log == ["a+", "a-"]
    await wait_for(lambda: b.is_leader)
    assert time.monotonic() - started < SHORT["lease_duration"]  # no waiting out the lease
    assert api.objects[("leases", "istio-system", "federationd")]["spec"]["leaseTransitions"] == 1
    await b.stop()
    assert log == ["a+", "a-", "b+", "b-"]


async def test_standby_takes_over_after_the_leader_dies(client: ClusterClient, api: FakeApi) -> None:
    log: list[str] = []
    a = elector(client, "a", log, metrics=Metrics())
    b = elector(client, "b", log, metrics=Metrics())
    a.start()
    await wait_for(lambda: a.is_leader)
    b.start()
    await wait_for(lambda: b.holder == "a")
    died = time.monotonic()
    await a.stop(release=False)  # a crash: nobody releases the lease
    await wait_for(lambda: b.is_leader, within=5)
    assert time.monotonic() - died >= SHORT["lease_duration"] * 0.75
    await b.stop()


async def test_leader_steps_down_when_it_cannot_renew(client: ClusterClient, api: FakeApi) -> None:
    log: list[str] = []
    a = elector(client, "a", log, metrics=Metrics())
    a.start()
    await wait_for(lambda: a.is_leader)
    api.faults.append(Fault(503, 10**6, verb="update"))
    await wait_for(lambda: not a.is_leader, within=3)
    assert log == ["a+", "a-"]
    api.faults.clear()
    await wait_for(lambda: a.is_leader, within=3)  # campaigns again and wins
    assert a.transitions == 2
    await a.stop()


async def test_racing_candidates_get_one_winner(client: ClusterClient, api: FakeApi) -> None:
    log: list[str] = []
    electors = [elector(client, f"e{i}", log, metrics=Metrics()) for i in range(4)]
    for e in electors:
        e.start()
    await wait_for(lambda: any(e.is_leader for e in electors))
    await wait_for(lambda: all(e.holder for e in electors))
    await asyncio.sleep(0)
    assert sum(e.is_leader for e in electors) == 1
    for e in electors:
        await e.stop()


async def test_a_hung_api_server_cannot_keep_a_leader_past_its_deadline(
        client: ClusterClient, api: FakeApi) -> None:
    log: list[str] = []
    a = elector(client, "a", log, metrics=Metrics())
    a.start()
    await wait_for(lambda: a.is_leader)
    hung = time.monotonic()
    api.hang_verbs = {"get", "update"}  # requests never answer (client timeout is 5 s)
    await wait_for(lambda: not a.is_leader, within=3)
    assert time.monotonic() - hung < SHORT["renew_deadline"] + SHORT["retry_period"] + 0.3
    api.hang_verbs = set()
    await a.stop()
