"""The daemon's HTTP face for operators: ``/metrics``, ``/healthz``, ``/readyz``,
``/debug/*``.

The app knows nothing about the pipeline; the daemon passes in what to report:

* ``metrics`` — the ``Metrics`` registry served on ``/metrics`` (Prometheus text format);
* ``ready`` — a callable answering readiness: ``True``/``False`` or ``(ok, reason)``,
  sync or async. ``/readyz`` answers 200 ``ok`` or 503 with the reason;
* ``healthy`` — the same for ``/healthz`` (liveness: default always ok while the loop
  serves requests, which is itself the signal);
* ``debug`` — name → callable returning something JSON-encodable (dicts, lists,
  msgspec Structs); served on ``/debug/<name>``, listed on ``/debug/``.

``serve()`` starts it and returns a handle with the bound port (port 0 = any free one)
and ``close()``. Tests and the default configuration bind 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from federationd.metrics import METRICS, Metrics

Check = Callable[[], "bool | tuple[bool, str] | Awaitable[bool | tuple[bool, str]]"]
DebugHook = Callable[[], Any]

_METRICS_KEY = web.AppKey("metrics", Metrics)
_READY_KEY = web.AppKey("ready", object)
_HEALTHY_KEY = web.AppKey("healthy", object)
_DEBUG_KEY = web.AppKey("debug", dict)


async def _evaluate(check: Check | None) -> tuple[bool, str]:
    if check is None:
        return True, ""
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await result
    except Exception as e:  # a failing check means "not ok", never a 500 page
        return False, f"check failed: {type(e).__name__}"
    if isinstance(result, tuple):
        return bool(result[0]), str(result[1])
    return bool(result), ""


def _check_handler(key: web.AppKey[Any]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        ok, reason = await _evaluate(request.app[key])
        if ok:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=(reason or "not ready") + "\n")

    return handler


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS_KEY].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _json_default(o: Any) -> Any:
    if isinstance(o, set | frozenset):
        return sorted(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


async def _debug_index(request: web.Request) -> web.Response:
    hooks: dict[str, DebugHook] = request.app[_DEBUG_KEY]
    return web.json_response({"endpoints": [f"/debug/{name}" for name in sorted(hooks)]})


async def _debug(request: web.Request) -> web.Response:
    hooks: dict[str, DebugHook] = request.app[_DEBUG_KEY]
    hook = hooks.get(request.match_info["name"])
    if hook is None:
        raise web.HTTPNotFound(text="no such debug endpoint\n")
    result = hook()
    if inspect.isawaitable(result):
        result = await result
    body = msgspec.json.encode(result, enc_hook=_json_default)
    return web.Response(body=body, content_type="application/json")


def make_app(
    *,
    metrics: Metrics | None = None,
    ready: Check | None = None,
    healthy: Check | None = None,
    debug: Mapping[str, DebugHook] | None = None,
) -> web.Application:
    app = web.Application()
    app[_METRICS_KEY] = metrics or METRICS
    app[_READY_KEY] = ready
    app[_HEALTHY_KEY] = healthy
    app[_DEBUG_KEY] = dict(debug or {})
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _check_handler(_HEALTHY_KEY))
    app.router.add_get("/readyz", _check_handler(_READY_KEY))
    app.router.add_get("/debug/", _debug_index)
    app.router.add_get("/debug/{name}", _debug)
    return app


def add_debug(app: web.Application, name: str, hook: DebugHook) -> None:
    """Register another ``/debug/<name>`` hook (before or after serving starts)."""
    app[_DEBUG_KEY][name] = hook


class Server:
    """A running app: ``port``, ``url``, ``close()``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> Server:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    return Server(runner, host, int(bound))
