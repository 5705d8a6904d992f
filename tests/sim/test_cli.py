"""``federationd sim`` as a process: writes kubeconfigs, serves, stops cleanly on signals."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml

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
