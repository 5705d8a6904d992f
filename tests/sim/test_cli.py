"""``federationd sim`` as a process: writes kubeconfigs, serves, stops cleanly on signals."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from federationd import gcfreeze
from federationd.sim import cli as sim_cli
from federationd.sim.versions import DEFAULT_VERSION

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_sim_command_serves_until_signalled(tmp_path: Path, sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "sim", "--clusters", "master,remote-eu", "--dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not lines or "serving" not in lines[-1]:
                line = (await proc.stdout.readline()).decode()
                assert line, f"exited early: {(await proc.stderr.read()).decode() if proc.stderr else ''}"
                lines.append(line)
        merged = yaml.safe_load((tmp_path / "kubeconfig").read_text())
        assert [c["name"] for c in merged["contexts"]] == ["master", "remote-eu"]
        assert (tmp_path / "master.kubeconfig").exists() and (tmp_path / "remote-eu.kubeconfig").exists()
        assert any(str(tmp_path / "kubeconfig") in ln for ln in lines)
        proc.send_signal(sig)
        async with asyncio.timeout(15):
            rest, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert b"stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sim_command_sets_regions_zones_nodes_and_load_balancers(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "sim", "--clusters", "master,remote-us", "--dir", str(tmp_path),
        "--region", "remote-us=us-east-1", "--zones", "remote-us=us-east-1a,us-east-1b", "--nodes", "remote-us=2",
        "--lb", "remote-us=hostname",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            out = ""
            while "serving" not in out:
                line = (await proc.stdout.readline()).decode()
                assert line, "exited early"
                out += line
        assert "remote-us: https://127.0.0.1:" in out and "region=us-east-1 (us-east-1a,us-east-1b)" in out
        kube = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(tmp_path / "kubeconfig"), "--context", "remote-us", "get", "nodes",
            "-L", "topology.kubernetes.io/region,topology.kubernetes.io/zone", "--no-headers",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        async with asyncio.timeout(30):
            nodes, err = await kube.communicate()
        rows = [ln.split() for ln in nodes.decode().splitlines()]
        assert kube.returncode == 0, err.decode()
        assert len(rows) == 2 and {r[-2] for r in rows} == {"us-east-1"}
        assert {r[-1] for r in rows} == {"us-east-1a", "us-east-1b"}
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.communicate()
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--region", "nowhere=us-east-1"], "no cluster 'nowhere' in --clusters"),
        (["--lb", "master=elb"], "expected ip or hostname"),
        (["--nodes", "master=zero"], "expected a whole number"),
        (["--zones", "master"], "expected NAME=VALUE"),
        (["--identity", "master=federationd"], "expected NAMESPACE/SERVICEACCOUNT"),
        (["--identity", "other=istio-system/federationd"], "no cluster 'other' in --clusters"),
    ],
)
async def test_sim_command_refuses_bad_cluster_flags(tmp_path: Path, flags: list[str], message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "sim", "--clusters", "master", "--dir", str(tmp_path), *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 2
    assert message in err.decode()


async def test_sim_command_writes_a_kubeconfig_per_identity(tmp_path: Path) -> None:
    # `kubectl auth whoami` needs SelfSubjectReview (Kubernetes 1.27+), so this fleet is
    # the kubectl's own release rather than the fleet default (1.16, which has none)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "sim", "--clusters", "master", "--dir", str(tmp_path),
        "--identity", "master=istio-system/federationd", "--kubernetes-version", DEFAULT_VERSION,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    path = tmp_path / "master.istio-system.federationd.kubeconfig"
    try:
        async with asyncio.timeout(30):
            out = ""
            while "serving" not in out:
                line = (await proc.stdout.readline()).decode()
                assert line, "exited early"
                out += line
        assert f"master: serviceaccount istio-system/federationd kubeconfig={path}" in out
        assert path.stat().st_mode & 0o777 == 0o600
        # the ServiceAccount has no permissions of its own: RBAC decides
        for kubeconfig, want in ((path, "system:serviceaccount:istio-system:federationd"), (tmp_path / "master.kubeconfig", "kubernetes-admin")):
            kube = await asyncio.create_subprocess_exec(
                "kubectl", "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )
            async with asyncio.timeout(30):
                who, err = await kube.communicate()
            assert kube.returncode == 0 and who.decode() == want, err.decode()
        kube = await asyncio.create_subprocess_exec(
            "kubectl", "--kubeconfig", str(path), "auth", "can-i", "list", "nodes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        async with asyncio.timeout(30):
            answer, _ = await kube.communicate()
        assert kube.returncode == 1 and answer.decode().strip() == "no"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.communicate()
    assert proc.returncode == 0


async def test_sim_command_keeps_the_collector_off_its_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``federationd sim`` runs the daemon's freeze loop: its stores live as long as the
    fleet, and a full collection over them stopped a 100-cluster fleet for 110-160 ms
    at a time. Served in this process, the loop's period shortened, until it froze."""
    monkeypatch.setattr(sim_cli, "freeze_loop", functools.partial(gcfreeze.freeze_loop, period=0.001))
    gc.unfreeze()
    args = sim_cli._parser().parse_args(["--clusters", "master", "--dir", str(tmp_path)])
    serving = asyncio.create_task(sim_cli._serve(args, sim_cli.cluster_specs(args), []))
    try:
        async with asyncio.timeout(30):
            while gc.get_freeze_count() == 0:
                assert not serving.done(), serving.exception()
                await asyncio.sleep(0.001)
        # frozen, so serving (its signal handlers are installed before the loop starts)
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await serving == 0
    finally:
        if not serving.done():
            serving.cancel()
        gc.unfreeze()
