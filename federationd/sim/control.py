"""A small HTTP API to inject faults into a running fleet (``federationd sim --control-port``).

Plain HTTP on 127.0.0.1, separate from the clusters' API servers so that a partitioned
cluster can still be healed. ``POST /clusters/{name}/faults/{action}`` with a JSON body
of the keyword arguments of the matching ``Faults`` method::

    latency      {"seconds": 0.2, "verb": "list"}
    error-rate   {"rate": 0.5, "code": 503, "verb": "patch"}
    throttle     {"retry_after": 2}
    drop-watches {}
    partition    {"seconds": 5}
    heal         {}
    compact      {}
    clear        {}

``GET /clusters`` lists the clusters with their URLs and request counters.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federationd.sim.fleet import Fleet

_ALLOWED = {
    "latency": {"seconds", "verb", "resource", "count", "duration"},
    "error-rate": {"rate", "code", "verb", "resource", "count", "duration"},
    "throttle": {"retry_after", "rate", "verb", "resource", "count", "duration"},
    "drop-watches": set(),
    "partition": {"seconds"},
    "heal": set(),
    "compact": set(),
    "clear": set(),
}


def control_app(fleet: Fleet) -> web.Application:
    async def clusters(_: web.Request) -> web.Response:
        return web.json_response(
            [
                {"name": c.name, "url": c.url, "region": c.region, "zones": list(c.zones),
                 "partitioned": c.partitioned, "requests": c.requests.by_verb()}
                for c in fleet
            ]
        )

    async def fault(request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if name not in fleet.names:
            return web.json_response({"error": f"no cluster {name!r}"}, status=404)
        if action not in _ALLOWED:
            return web.json_response({"error": f"unknown action {action!r}", "actions": sorted(_ALLOWED)}, status=404)
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body must be a JSON object"}, status=400)
        if not isinstance(body, dict) or set(body) - _ALLOWED[action]:
            return web.json_response({"error": f"allowed keys: {sorted(_ALLOWED[action])}"}, status=400)
        f = fleet[name].faults
        result: Any = None
        try:
            if action == "latency":
                f.latency(**body)
            elif action == "error-rate":
                f.error_rate(**body)
            elif action == "throttle":
                f.throttle(**body)
            elif action == "drop-watches":
                result = f.drop_watches()
            elif action == "partition":
                f.partition(float(body.get("seconds", 1.0)))
            elif action == "heal":
                f.heal()
            elif action == "compact":
                result = f.compact()
            else:
                f.clear()
        except (TypeError, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_get("/clusters", clusters)
    app.router.add_post("/clusters/{name}/faults/{action}", fault)
    return app


async def start_control(fleet: Fleet, *, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(control_app(fleet), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[1] if sockets else port
    return runner, int(actual)
