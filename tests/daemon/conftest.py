"""Fixtures for end-to-end tests: a simulated fleet in this process, the daemon as a real
process talking to it over HTTPS, and kubectl as users run it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from federationd.sim import Fleet

from .waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "deploy" / "crds").glob("*.yaml"))
KUBECTL = "/usr/bin/kubectl"


async def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {err.decode()}")
    return out.decode()


def install_crds(fleet: Fleet, cluster: str = "master", *, cel: bool = False) -> None:
    """deploy/crds/ (with ``cel``: the CRDs with their CEL rules, for a 1.25+ master)."""
    store = fleet[cluster].store
    if cel:
        from federationd.api import crds

        for kind in crds.KINDS:
            store.create(crds.crd(kind, cel=True))
    else:
        for path in CRDS:
            store.create(yaml.safe_load(path.read_text()))
    if store.get("v1", "Namespace", "istio-system") is None:
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}})


class DaemonProcess:
    """``federationd run`` as a child process against the fleet's master."""

    def __init__(self, *, kubeconfig: Path, log: Path, name: str = "d", extra: list[str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.name = name
        self.extra = extra or []
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.stderr_path = log.with_suffix(f".{name}.stderr")
        self._stderr: Any = None

    async def start(self) -> None:
        self._stderr = await asyncio.to_thread(open, self.stderr_path, "ab")  # closed in terminate()
        # Watches of 30 to 60 s; the emulator, as kube-apiserver, sends an idle watch a
        # BOOKMARK every minute and 2 s before its deadline, so the inactivity watchdog
        # waits longer than the longest watch.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "federationd.cli", "run",
            "--kubeconfig", str(self.kubeconfig), "--log", str(self.log),
            "--http-port", "0", "--namespace", "istio-system", "--identity", self.name,
            "--resync-period", "2", "--watch-timeout", "30", "--inactivity-timeout", "70",
            "--request-timeout", "5", "--log-level", "INFO", *self.extra,
            stdout=asyncio.subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            await self.proc.wait()
            raise AssertionError(f"daemon {self.name} exited: {self.stderr()}")
        self.url = line.decode().strip().rsplit(" ", 1)[-1]

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(self.url + path, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status, await r.text()

    async def debug(self, name: str) -> Any:
        status, body = await self.get(f"/debug/{name}")
        assert status == 200, body
        return json.loads(body)

    async def ready(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            status, _ = await self.get("/readyz")
            return status == 200
        return False

    async def converged(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            d = await self.debug("converged")
            return bool(
                d["leader"] and d["status"] and d.get("derived", True) and d.get("trust", True)
                and all(d["clusters"].values())
            )
        return False

    async def terminate(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:  # noqa: ASYNC109 - a deadline for the child's exit, not a cancel scope
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return code


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with Fleet(["master"], directory=tmp_path / "fleet") as f:
        install_crds(f)
        yield f


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[list[DaemonProcess]]:
    """Daemons started by a test; every one still running is stopped afterwards."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.returncode is None:
            with contextlib.suppress(Exception):
                await d.terminate(signal.SIGKILL, timeout=10)


async def start_daemon(
    daemons: list[DaemonProcess], fleet: Fleet, log: Path, *, name: str = "d", extra: list[str] | None = None,
    wait_ready: bool = True, kubeconfig: Path | None = None,
) -> DaemonProcess:
    """A daemon against the fleet's master; it authenticates as the ServiceAccount of
    ``deploy/rbac.yaml`` (applied first), so RBAC decides what it may do, unless the test
    gives another ``kubeconfig``."""
    if kubeconfig is None:
        from .identity import master_kubeconfig

        kubeconfig = master_kubeconfig(fleet["master"])
    d = DaemonProcess(kubeconfig=kubeconfig, log=log, name=name, extra=extra)
    daemons.append(d)
    await d.start()
    if wait_ready:
        await wait_for(d.ready, timeout=30, what=f"daemon {name} ready")
    return d
