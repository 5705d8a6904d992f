"""An unreachable cluster is one log line per state change, not one per watched kind
per retry."""

from __future__ import annotations

import logging

import pytest

from federationd.clusters import ClusterClient
from federationd.clusters.health import ClusterHealth
from federationd.metrics import Metrics
from tests.runtime.conftest import wait_for
from tests.runtime.fakeapi import FakeApi, Fault
from tests.runtime.test_reflector import Recorder, ns, reflector


def test_health_logs_each_state_change_once(caplog: pytest.LogCaptureFixture) -> None:
    h = ClusterHealth("remote-eu", metrics=Metrics())
    with caplog.at_level(logging.DEBUG, logger="federationd.clusters.health"):
        h.record_success()
        for i in range(50):
            h.record_failure("connection refused by r:443" if i % 2 else "connection to r:443 timed out")
        h.record_success()
        h.record_success()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "cluster remote-eu: connected",
        "cluster remote-eu: unreachable: connection to r:443 timed out",
        "cluster remote-eu: connected",
    ]


async def test_a_reflector_does_not_warn_per_retry(
        client: ClusterClient, api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    api.put("namespaces", ns("a"))
    api.faults.append(Fault(503, 20, verb="list"))
    rec = Recorder()
    r = reflector(client, rec)
    with caplog.at_level(logging.DEBUG, logger="federationd.watchers.reflector"):
        r.start()
        await wait_for(lambda: ("upsert", "a") in rec.events)
        assert r.stats["errors"] == 20
        # the fake API server's own aiohttp log (a watch cut by stop) is not the subject
        warnings = [x for x in caplog.records if x.levelno >= logging.WARNING and x.name.startswith("federationd")]
        assert warnings == []  # the cluster's health reports an outage, once
        await r.stop()
    # a refusal that is not an outage is warned about once, not per retry
    caplog.clear()
    api.faults.append(Fault(403, 6, verb="list"))
    r = reflector(client, rec)
    with caplog.at_level(logging.DEBUG, logger="federationd.watchers.reflector"):
        r.start()
        await wait_for(lambda: api.faults[-1].count == 0)
        await wait_for(lambda: r.synced.is_set())
        await r.stop()
    warnings = [x.getMessage() for x in caplog.records if x.levelno >= logging.WARNING and x.name.startswith("federationd")]
    assert len(warnings) == 1 and "403" in warnings[0], warnings
