"""``federationd demo`` as a user runs it: a child process, judged by what it prints and
by what it leaves behind (nothing: no process, no listening port)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ("master", "remote-gke", "remote-eks")
KUBECTL = Path("/usr/bin/kubectl")

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="the demo applies the samples with /usr/bin/kubectl, absent here")


async def _start(directory: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "demo", "--dir", str(directory), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _read_until(proc: asyncio.subprocess.Process, pattern: str, *, timeout: float) -> str:  # noqa: ASYNC109 - a deadline on the child's output
    """Everything the child printed up to the first line matching ``pattern``."""
    assert proc.stdout is not None
    seen: list[str] = []

    async def scan() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            seen.append(line.decode())
            if re.search(pattern, seen[-1]):
                return
        raise AssertionError(f"exited before printing {pattern!r}:\n{''.join(seen)}")

    try:
        await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(seen)}") from None
    return "".join(seen)


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line contains ``text`` (the demo's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def _listening(url: str) -> bool:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _assert_nothing_left(out: str, directory: Path) -> None:
    m = re.search(r"pid (\d+), serving", out)
    assert m, out
    assert not _alive(int(m.group(1))), "the daemon is still running"
    assert _processes_mentioning(str(directory)) == []
    urls = re.findall(r"https?://127\.0\.0\.1:\d+", out)
    assert len(urls) >= len(CLUSTERS) + 1, urls  # every API server and the daemon's HTTP
    still = [u for u in set(urls) if _listening(u)]
    assert still == [], f"still listening: {still}"
    assert "daemon stopped (exit code 0); fleet stopped" in out


async def test_demo_once_converges_and_leaves_nothing_running(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    proc = await _start(directory, "--once", "--timeout", "40")
    try:
        out_b, _ = await asyncio.wait_for(proc.communicate(), 75)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = out_b.decode()
    assert proc.returncode == 0, out[-6000:]
    assert "\x1b[" not in out, "no colour codes when stdout is not a terminal"

    # the seed workflow, with kubectl: seed 001's Istio resource (mesh expansion) first
    assert "$ kubectl --context master -n istio-system create -f deploy/samples/istio-multicluster-cr.yaml" in out
    assert "istio.istio.banzaicloud.io/gateway-multicluster created" in out
    for remote in ("remote-gke", "remote-eks"):
        assert f"secret generic {remote} --from-file={remote}=" in out
        assert f"remoteistio.istio.banzaicloud.io/{remote} created" in out

    # the last view printed is the converged one
    view = out[out.rindex("federationd demo  ·"):]
    m = re.search(r"converged: every cluster connected, every resource Available, in (\d+\.\d) s", view)
    assert m, view
    assert float(m.group(1)) < 40
    for name in CLUSTERS:
        row = next(ln for ln in view.splitlines() if ln.startswith(f"{name} ") and (" master " in ln or " remote " in ln))
        assert " connected " in row, row
        assert "pending" not in row, row
    assert "/readyz: ready" in view
    # the mesh the demo built analyzes clean: the Istio resource's MeshAnalyzed condition
    assert re.search(r"^  MeshAnalyzed: True \(NoFindings\): ", view, re.M), view
    assert re.search(r"elb\.amazonaws\.com → \d+\.\d+\.\d+\.\d+", view), "the hostname gateway shows its resolved address"
    # meshNetworks on the master: one network per cluster, the master's own included
    start = view.index("meshNetworks (")
    nets = view[start:view.index("\nevent log", start)]
    for name in CLUSTERS:
        assert re.search(rf"^  {name} +endpoints from \S+ +gateways \d+\.\d+\.\d+\.\d+:\d+", nets, re.M), nets
    # kubectl get istios,remoteistios -A: every resource Available with its gateways
    get = view[view.index("get istios,remoteistios -A"):]
    crs = [ln.split() for ln in get.splitlines() if ln.startswith("istio-system ")]
    assert {c[1].rsplit("/", 1)[1] for c in crs} == {"gateway-multicluster", "remote-gke", "remote-eks"}
    for c in crs:
        assert c[2] == "Available", c
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\.\d+.*", c[3]), f"GATEWAYS filled: {c}"
    # every component ready x/x on every cluster
    counts = re.findall(r"istio-[a-z-]+ (\d+)/(\d+)", view)
    assert counts and all(a == b and a != "0" for a, b in counts), counts
    # and their Pods run: every cluster's, all Running and Ready
    pod_lines = re.findall(r"^  pods in istio-system: (\d+) Running, (\d+) ready of (\d+)$", view, re.M)
    assert len(pod_lines) == len(CLUSTERS), view
    assert all(a == b == c and a != "0" for a, b, c in pod_lines), pod_lines

    assert "federationd events --log" in out and "federationd explain --log" in out
    assert "federationd analyze --log" in out
    # the printed commands work as printed, from where the demo was run
    printed = next(ln.strip() for ln in out.splitlines() if re.match(r"^  \S*federationd state --log ", ln))
    shell = await asyncio.create_subprocess_shell(
        printed, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    state_out, state_err = await asyncio.wait_for(shell.communicate(), 60)
    assert shell.returncode == 0, (printed, state_err.decode()[-2000:])
    assert b"istios:" in state_out
    _assert_nothing_left(out, directory)

    # the hostname was answered from the demo's hosts file, first time: no DNS was asked
    events = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "events", "--log", str(directory / "events.db"),
        "--type", "HostnameResolved", "--json", stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    listed, _ = await asyncio.wait_for(events.communicate(), 30)
    resolved = [json.loads(ln) for ln in listed.decode().splitlines() if ln.strip()]
    assert resolved, "the hostname gateway was resolved"
    assert all(r["ips"] and not r.get("error") for r in resolved), resolved

    # and the analyzer, run on the demo's event log, finds no error in the mesh it built
    analyze = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federationd.cli", "analyze", "--log", str(directory / "events.db"), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    found, err = await asyncio.wait_for(analyze.communicate(), 30)
    assert analyze.returncode == 0, (found.decode()[-4000:], err.decode()[-2000:])
    assert [f for f in json.loads(found) if f["severity"] == "error"] == []


async def test_sigint_stops_the_daemon_and_the_fleet(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    proc = await _start(directory, "--keep-running", "--timeout", "40", "--interval", "1")
    try:
        # the first view: the fleet, the daemon and every sample are up
        out = await _read_until(proc, r"^federationd demo  ·", timeout=40)
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out += rest.decode()
    assert proc.returncode == 0, out[-4000:]
    assert "stopping" in out
    _assert_nothing_left(out, directory)


async def test_not_converging_in_time_says_what_is_pending(tmp_path: Path) -> None:
    # the deadline has passed before the first look: the failure path, deterministically
    directory = tmp_path / "demo"
    proc = await _start(directory, "--once", "--timeout", "0")
    try:
        out_b, _ = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = out_b.decode()
    assert proc.returncode == 1, out[-4000:]
    head = "federationd demo: not converged 0 s after the Istio resource was applied; still pending:"
    assert head in out, out[-4000:]
    message = out[out.index(head):]
    assert re.search(r"^  - (master|remote-gke|remote-eks): ", message, re.M), message
    assert "last lines of the daemon's log" in message
    _assert_nothing_left(out, directory)
