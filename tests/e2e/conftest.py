"""One simulated master and one ``federationd run`` process per test module.

Starting the daemon and letting it install a control plane is the slow part of an end
to end test, so a module shares them and each test starts by re-applying the CR it
needs (``kubectl apply``: the three-way merge removes what the previous test set).
The fleet, the daemon process and kubectl are the ones the daemon's own end-to-end
tests use (``tests/daemon/conftest.py``); this file only widens their scope.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from federationd.sim import Cluster, ClusterSpec, Fleet
from tests.daemon.conftest import DaemonProcess, install_crds, start_daemon


@dataclass
class Mesh:
    """What a module's tests share: the fleet, its master and the daemon watching it."""

    fleet: Fleet
    daemon: DaemonProcess
    log: Path

    @property
    def master(self) -> Cluster:
        return self.fleet["master"]

    @property
    def kubeconfig(self) -> Path:
        return self.master.kubeconfig_path


@contextlib.asynccontextmanager
async def open_mesh(directory: Path, clusters: Sequence[str | ClusterSpec] = ("master",)) -> AsyncIterator[Mesh]:
    """A fleet (its first cluster the master, with the CRDs) and the daemon watching it;
    the daemon must stop cleanly at the end."""
    started: list[DaemonProcess] = []
    async with Fleet(list(clusters), directory=directory / "fleet") as fleet:
        install_crds(fleet)
        try:
            d = await start_daemon(started, fleet, directory / "log.db")
            yield Mesh(fleet=fleet, daemon=d, log=directory / "log.db")
            assert await d.terminate() == 0, d.stderr()[-4000:]
        finally:
            for p in started:
                if p.proc is not None and p.proc.returncode is None:
                    with contextlib.suppress(Exception):
                        await p.terminate(signal.SIGKILL, timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    async with open_mesh(tmp_path_factory.mktemp("e2e")) as m:
        yield m
