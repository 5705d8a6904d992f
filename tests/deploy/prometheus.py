"""The real Prometheus for the tests: Debian's ``prometheus`` package (the server and
``promtool``), never a re-implementation of PromQL.

* ``require(binary)`` skips a test, saying how to install the package, on a machine that
  does not have it (``.ci/run`` installs it on CI).
* ``rule_groups()`` is ``deploy/prometheusrule.yaml``'s ``spec``: the Prometheus Operator
  hands exactly that to Prometheus as a rules file.
* ``scale_durations()`` shrinks every ``for:`` and range selector of the rules by the
  same factor, so an end-to-end test sees "5 minutes unreachable" after 5 seconds with the
  rule otherwise unchanged; thresholds are not durations and are left as they are.
* ``PrometheusServer`` runs ``prometheus`` on 127.0.0.1 (a free port, a temporary
  storage directory) scraping the targets a test lists in a file_sd file, and reads its
  HTTP API (``/api/v1/query``, ``query_range``, ``alerts``, ``rules``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULE = ROOT / "deploy" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "dashboards" / "federationd.json"

INSTALL_HINT = (
    "install Debian's prometheus package (the server and promtool, 2.42): "
    "apt-get install --no-install-recommends prometheus"
)


def binary(name: str) -> str | None:
    return shutil.which(name)


def require(name: str) -> str:
    """The path of ``name`` (``prometheus`` or ``promtool``), or skip saying how to get it."""
    path = binary(name)
    if path is None:
        pytest.skip(f"{name} is not installed: {INSTALL_HINT}")
    return path


# --- the rules ---------------------------------------------------------------------------


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's ``spec`` (``{"groups": [...]}``): a Prometheus rules file."""
    (doc,) = [d for d in yaml.safe_load_all(RULE.read_text()) if d]
    spec = doc["spec"]
    assert isinstance(spec, dict)
    return spec


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|[smhdwy]))+$")
_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[([^\]]*)\]")


def seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``) in seconds."""
    if not _DURATION.match(duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in _PART.findall(duration))


def _duration(secs: float) -> str:
    ms = round(secs * 1000)
    if ms <= 0:
        raise ValueError(f"{secs} s scales to nothing")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scale_durations(groups: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """``groups`` with every ``for:`` and ``[range]`` divided by ``factor``."""

    def scale_range(m: re.Match[str]) -> str:
        inner = m.group(1)
        if ":" in inner:  # a subquery [range:step]: scale both
            rng, step = inner.split(":", 1)
            return f"[{_duration(seconds(rng) / factor)}:{_duration(seconds(step) / factor) if step else ''}]"
        return f"[{_duration(seconds(inner) / factor)}]"

    out: dict[str, Any] = json.loads(json.dumps(groups))
    for g in out["groups"]:
        for r in g["rules"]:
            r["expr"] = _RANGE.sub(scale_range, r["expr"])
            if "for" in r:
                r["for"] = _duration(seconds(r["for"]) / factor)
    return out


# --- the dashboard -------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(items: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every panel, rows and panels inside collapsed rows included."""
    out: list[dict[str, Any]] = []
    for p in dashboard()["panels"] if items is None else items:
        out.append(p)
        out.extend(panels(p.get("panels", [])))
    return out


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def variables(expr: str) -> set[str]:
    """The Grafana variables ``expr`` uses."""
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with Grafana's variables replaced as Grafana does before sending it."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


# --- the server ------------------------------------------------------------------------------


class PrometheusError(Exception):
    """The Prometheus process or its API failed."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    """``prometheus`` scraping the targets in ``targets.json``, with ``rules`` loaded."""

    def __init__(
        self, directory: Path, *, rules: Mapping[str, Any], job: str = "federationd",
        scrape_interval: str = "1s", evaluation_interval: str = "1s",
    ) -> None:
        self.directory = directory
        self.rules = rules
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.log_path = directory / "prometheus.log"
        self._targets = directory / "targets.json"
        self._session: aiohttp.ClientSession | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(self.directory / "rules.yaml")],
            "scrape_configs": [{
                "job_name": self.job,
                "file_sd_configs": [{"files": [str(self._targets)], "refresh_interval": "1s"}],
            }],
        }

    async def start(self, *, timeout: float = 60) -> None:  # noqa: ASYNC109 - a deadline for the server's readiness
        path = require("prometheus")
        (self.directory / "rules.yaml").write_text(yaml.safe_dump(dict(self.rules), sort_keys=False))
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if not self._targets.exists():
            self.set_targets({})
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        for _ in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            log = await asyncio.to_thread(open, self.log_path, "ab")
            try:
                self.proc = await asyncio.create_subprocess_exec(
                    path, f"--config.file={self.directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                )
            finally:
                log.close()  # the child has its own descriptor
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with self._session.get(f"{self.url}/-/ready") as r:
                        if r.status == 200:
                            return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 0.2)
            if self.proc.returncode is None:
                await self.stop()
                raise PrometheusError(f"prometheus not ready after {timeout} s:\n{self.log()[-3000:]}")
            if "address already in use" not in self.log():
                break
        raise PrometheusError(f"prometheus exited with {self.proc.returncode if self.proc else None}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def set_targets(self, targets: Mapping[str, Mapping[str, str]]) -> None:
        """Scrape exactly ``targets`` (``host:port`` → target labels) from now on (or from
        the start, when called before ``start()``). The file is replaced atomically:
        Prometheus watches it and must never read half of it."""
        groups = [{"targets": [t], "labels": dict(labels)} for t, labels in targets.items()]
        tmp = self._targets.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, self._targets)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the HTTP API ---------------------------------------------------------------------------

    async def api(self, path: str, **params: str) -> Any:
        assert self._session is not None, "not started"
        async with self._session.get(f"{self.url}/api/v1/{path}", params=params) as r:
            body = await r.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        data = await self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        return list(data["result"]) if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    async def query_range(self, expr: str, *, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        """Every series ``expr`` gave between ``start`` and ``end`` (Unix seconds)."""
        data = await self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=step)
        assert data["resultType"] == "matrix", data
        return list(data["result"])

    async def alerts(self) -> list[dict[str, Any]]:
        """Active alerts: pending or firing (resolved ones are not listed)."""
        return list((await self.api("alerts"))["alerts"])

    async def rule_states(self) -> list[dict[str, Any]]:
        return [r for g in (await self.api("rules"))["groups"] for r in g["rules"]]

    async def target_health(self) -> dict[str, str]:
        """scrape URL → "up" | "down" | "unknown" for every active target."""
        data = await self.api("targets", state="active")
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}


def finite(series: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The series of a query_range answer that have at least one finite value."""
    return [s for s in series if any(math.isfinite(float(v)) for _, v in s.get("values", []))]


def latest(series: dict[str, Any]) -> float:
    return float(series["values"][-1][1]) if "values" in series else float(series["value"][1])
