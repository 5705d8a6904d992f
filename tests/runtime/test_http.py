"""The operator endpoints and the metric families."""

from __future__ import annotations

import aiohttp

from federationd.http import add_debug, make_app, serve
from federationd.metrics import CLUSTER_STATES, Metrics


async def test_endpoints(metrics: Metrics) -> None:
    ready = {"ok": False}

    async def readiness() -> tuple[bool, str]:
        return ready["ok"], "initial lists not synced"

    def broken() -> bool:
        raise RuntimeError("x")

    metrics.reconcile_total.labels(controller="mesh", result="success").inc()
    app = make_app(metrics=metrics, ready=readiness, healthy=broken,
                   debug={"state": lambda: {"clusters": {"master": "connected"}}})
    server = await serve(app)
    add_debug(app, "queues", lambda: [{"name": "actuator-master", "depth": 0}])
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "/readyz") as r:
                assert r.status == 503 and "not synced" in await r.text()
            ready["ok"] = True
            async with s.get(server.url + "/readyz") as r:
                assert r.status == 200
            async with s.get(server.url + "/healthz") as r:
                assert r.status == 503 and "RuntimeError" in await r.text()
            async with s.get(server.url + "/metrics") as r:
                text = await r.text()
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                assert 'controller_runtime_reconcile_total{controller="mesh",result="success"} 1.0' in text
            async with s.get(server.url + "/debug/state") as r:
                assert await r.json() == {"clusters": {"master": "connected"}}
            async with s.get(server.url + "/debug/queues") as r:
                assert (await r.json())[0]["name"] == "actuator-master"
            async with s.get(server.url + "/debug/") as r:
                assert (await r.json())["endpoints"] == ["/debug/queues", "/debug/state"]
            async with s.get(server.url + "/debug/nope") as r:
                assert r.status == 404
    finally:
        await server.close()


def test_metric_names_and_cluster_state_gauge() -> None:
    m = Metrics()
    m.set_cluster_state("remote-eu", "unreachable")
    m.gateway_addresses.labels(cluster="remote-eu").set(2)
    m.convergence_seconds.observe(0.3)
    m.actuations_total.labels(cluster="remote-eu", result="applied").inc()
    text = m.exposition().decode()
    for state in CLUSTER_STATES:
        value = "1.0" if state == "unreachable" else "0.0"
        assert f'federationd_cluster_state{{cluster="remote-eu",state="{state}"}} {value}' in text
    for name in ("controller_runtime_reconcile_errors_total", "controller_runtime_reconcile_time_seconds_bucket",
                 "workqueue_depth", "rest_client_requests_total", "leader_election_master_status",
                 "federationd_events_appended_total", "federationd_event_log_head",
                 "federationd_projection_lag_events", "federationd_convergence_seconds_bucket",
                 'federationd_actuations_total{cluster="remote-eu",result="applied"} 1.0'):
        assert f"# HELP {name.split('{')[0].removesuffix('_bucket')}" in text or name in text
    m.forget_cluster("remote-eu")
    text = m.exposition().decode()
    assert 'federationd_cluster_state{cluster="remote-eu"' not in text
    assert 'federationd_gateway_addresses{cluster="remote-eu"' not in text
