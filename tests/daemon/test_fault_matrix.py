"""The fault matrix: the daemon survives each fault and nothing is lost.

"Nothing lost" is checked the same way each time: the event log is contiguous, a replay
of it gives byte for byte the desired state the running daemon holds (``/debug/desired``),
and every cluster holds exactly that (``/debug/converged``: every desired object in
effect, nothing stale). Each fault is bounded in count and time. The figures each test
prints (``FAULT …``) are the ones in the README's table.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from federationd.sim import Fleet

from .conftest import DaemonProcess, kubectl, start_daemon
from .test_e2e import SEED_000, _available, _cli, _events_all, _spec, _status
from .test_federation import REMOTE, _join, _remote_status
from .waiting import wait_for


async def _nothing_lost(d: DaemonProcess, log: Path) -> int:
    """Log contiguous, replay = live desired state, every cluster converged to it."""
    await wait_for(d.converged, timeout=90, what="converged")
    events = await _events_all(log)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the log has a gap"
    live = await d.debug("desired")
    out = await _cli("replay", "--log", str(log), "--until", str(live["seq"]), "--hash", "--no-snapshot")
    assert out.split() == [str(live["seq"]), live["hash"]], (out, live["seq"], live["hash"])
    return len(seqs)


async def test_sigkill_at_random_points_during_actuation(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kills = 20
    rng = random.Random(20261206)
    kc = fleet["master"].kubeconfig_path
    log = tmp_path / "log.db"
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    started = time.monotonic()
    for i in range(kills):
        if i == kills // 2:
            await _spec(fleet, mtls=True)  # more to do while being killed
        d = await start_daemon(daemons, fleet, log, name=f"k{i}", wait_ready=False, extra=["--snapshot-every", "25"])
        # a random point after it serves: listing, deriving, mid-write or idle (a kill
        # point, not a synchronisation)
        await asyncio.sleep(rng.uniform(0.05, 2.5))
        assert await d.terminate(signal.SIGKILL) == -signal.SIGKILL
    final = await start_daemon(daemons, fleet, log, name="final", extra=["--snapshot-every", "25"])
    await _available(fleet, final, generation=2)
    n = await _nothing_lost(final, log)
    print(f"FAULT sigkill kills={kills} events={n} total_s={time.monotonic() - started:.1f}")
    assert await final.terminate() == 0


async def test_throttling_and_server_errors(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    log = tmp_path / "log.db"
    faults = fleet["master"].faults
    # The CR is applied before the burst: the faults are the daemon's to survive. kubectl
    # against a 1.16 server (no aggregated discovery) lists each group/version on its own,
    # some thirty requests, and gives up when a third of them fail.
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    # a burst of 5xx on a third of the requests and 429 + Retry-After on a fifth, for 15 s
    faults.error_rate(rate=0.33, code=503, duration=15)
    faults.throttle(retry_after=1, rate=0.2, duration=15)
    started = time.monotonic()
    # An object that failed a dozen times in the burst waits its per-item backoff (5 ms
    # doubling to 1000 s, as client-go's) or the next resync, whichever comes first: the
    # resync is what bounds recovery after a long burst, so it is short here.
    d = await start_daemon(daemons, fleet, log, wait_ready=False, extra=["--resync-period", "10"])
    await wait_for(lambda: _status(fleet).get("Status") == "Available", timeout=120, what="Available through the faults")
    took = time.monotonic() - started
    faults.clear()
    n = await _nothing_lost(d, log)
    _, metrics = await d.get("/metrics")
    codes = {c: f'code="{c}"' in metrics for c in ("429", "503")}
    print(f"FAULT 5xx+429 available_s={took:.1f} events={n} seen={codes}")
    assert all(codes.values()), codes
    assert await d.terminate() == 0


async def test_watch_drops_and_410_storms(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    kc = fleet["master"].kubeconfig_path
    log = tmp_path / "log.db"
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    d = await start_daemon(daemons, fleet, log)
    await _available(fleet, d)
    faults = fleet["master"].faults
    storms = 10
    for i in range(storms):
        # a change the daemon must not miss, then its watches cut and its history gone
        await _spec(fleet, mtls=i % 2 == 0)
        faults.drop_watches()
        faults.compact()
    await _available(fleet, d, generation=storms + 1)
    n = await _nothing_lost(d, log)
    assert _status(fleet)["observedGeneration"] == storms + 1
    print(f"FAULT watch-drops+410 storms={storms} events={n}")
    assert await d.terminate() == 0


async def test_a_remote_down_does_not_hold_up_the_rest(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    down_s = 30.0
    async with Fleet(["master", REMOTE], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await wait_for(d.converged, timeout=60)
        fleet[REMOTE].faults.partition(down_s)
        down_at = time.monotonic()
        await wait_for(lambda: "unreachable" in str(_remote_status(fleet).get("ErrorMessage")), timeout=60, what="unreachable")
        # the master converges at its normal pace meanwhile, and the daemon stays ready
        t0 = time.monotonic()
        await kubectl(kc, "patch", "istio", "istio", "-n", "istio-system", "--type", "merge", "-p", '{"spec": {"mtls": true}}')
        await wait_for(lambda: _status(fleet).get("Status") == "Available" and _status(fleet).get("observedGeneration") == 2, timeout=30)
        master_s = time.monotonic() - t0
        assert await d.ready()
        remaining = down_s - (time.monotonic() - down_at)
        if remaining > 0:
            await wait_for(lambda: time.monotonic() - down_at >= down_s, timeout=down_s + 5, what="the outage to last")
        fleet[REMOTE].faults.heal()
        healed = time.monotonic()
        await wait_for(lambda: "unreachable" not in str(_remote_status(fleet).get("ErrorMessage")), timeout=30, what="reachable again")
        recovery_s = time.monotonic() - healed
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available", timeout=90, what="remote Available")
        n = await _nothing_lost(d, tmp_path / "log.db")
        print(f"FAULT remote-down down_s={down_s:g} master_converge_s={master_s:.1f} recovery_s={recovery_s:.1f} events={n}")
        assert await d.terminate() == 0
