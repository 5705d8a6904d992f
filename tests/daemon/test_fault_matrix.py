"""The fault matrix: the daemon survives each fault and nothing is lost.

"Nothing lost" is checked the same way each time: the event log is contiguous, a replay
of it gives byte for byte the desired state the running daemon holds (``/debug/desired``),
and every cluster holds exactly that (``/debug/converged``: every desired object in
effect, nothing stale). Who wrote what and when is read from the emulator's audit log
(every request, with the User-Agent that names the daemon instance), so "no write while
…" and "one writer at a time" are checked on what the API server received. Each fault
is bounded in count and time. The figures each test prints (``FAULT …``) are the ones in
the README's table.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import resource
import signal
import statistics
import time
from pathlib import Path

import aiohttp
import pytest

from federationd.sim import Fleet
from federationd.sim.server import AuditEvent

from .conftest import DaemonProcess, kubectl, start_daemon
from .test_e2e import SEED_000, _available, _cli, _cr, _events_all, _spec, _status
from .test_federation import REMOTE, _join, _remote_status
from .test_federation_more import _kubeconfig_secret, _remote_istio, _remote_mesh
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
    """One remote's API refuses connections for 60 s while a change that concerns every
    cluster is made again and again: the master and the other remote converge each one
    at the pace they had before the outage, the daemon stays ready, and the remote that
    was down is reachable again within 5 s of the heal and catches up."""
    down_s, up = 60.0, "remote-us"
    async with Fleet(["master", REMOTE, up], directory=tmp_path / "fleet") as fleet:
        kc = fleet["master"].kubeconfig_path
        d = await _join(fleet, daemons, tmp_path)
        await kubectl(kc, "apply", "-f", "-", stdin=_kubeconfig_secret(up, fleet[up].kubeconfig_path.read_bytes()))
        await kubectl(kc, "apply", "-f", "-", stdin=_remote_istio(up))
        await wait_for(lambda: _remote_status(fleet, up).get("Status") == "Available", timeout=60, what="second remote Available")
        await wait_for(d.converged, timeout=60)

        async def change(secure: bool, clusters: tuple[str, ...] = ("master", up)) -> float:
            """Flip controlPlaneSecurityEnabled; seconds until every cluster in
            ``clusters`` carries it and the Istio status observed it."""
            started = time.monotonic()
            await _spec(fleet, controlPlaneSecurityEnabled=secure)
            generation = (_cr(fleet, "istio").get("metadata") or {}).get("generation")
            policy = f"controlPlaneAuthPolicy: {'MUTUAL_TLS' if secure else 'NONE'}"
            await wait_for(lambda: all(policy in _remote_mesh(fleet, c) for c in clusters), timeout=30, what=policy)
            await wait_for(lambda: _status(fleet).get("observedGeneration") == generation, timeout=30, what="status")
            return time.monotonic() - started

        before = [await change(secure=i % 2 == 0) for i in range(3)]  # ends secure
        # longer than the outage: it ends by the heal below, at a known time
        fleet[REMOTE].faults.partition(down_s + 30)
        down_at = time.monotonic()
        await wait_for(lambda: "unreachable" in str(_remote_status(fleet).get("ErrorMessage")), timeout=60, what="unreachable")
        during: list[float] = []
        # the outage is spent converging changes elsewhere (bounded in count and time)
        while time.monotonic() - down_at < down_s - 5 and len(during) < 40:
            during.append(await change(secure=len(during) % 2 == 1))
            assert await d.ready()
        if len(during) % 2 == 0:  # end where the remote that is down was not
            during.append(await change(secure=False))
        await wait_for(lambda: time.monotonic() - down_at >= down_s, timeout=down_s, what="the outage to last")
        assert "unreachable" in str(_remote_status(fleet).get("ErrorMessage"))
        assert "controlPlaneAuthPolicy: MUTUAL_TLS" in _remote_mesh(fleet, REMOTE), "it missed the changes"
        fleet[REMOTE].faults.heal()
        healed = time.monotonic()
        await wait_for(lambda: "unreachable" not in str(_remote_status(fleet).get("ErrorMessage")), timeout=30, what="reachable again")
        recovery_s = time.monotonic() - healed
        # what it missed while down lands there now
        await wait_for(lambda: "controlPlaneAuthPolicy: NONE" in _remote_mesh(fleet, REMOTE), timeout=30, what="the remote caught up")
        caught_up_s = time.monotonic() - healed
        await wait_for(lambda: _remote_status(fleet).get("Status") == "Available", timeout=90, what="remote Available")
        n = await _nothing_lost(d, tmp_path / "log.db")
        err = d.stderr()
        print(
            f"FAULT remote-down down_s={down_s:g} changes_during={len(during)} "
            f"converge_before_s={statistics.median(before):.2f} (max {max(before):.2f}) "
            f"converge_during_s={statistics.median(during):.2f} (max {max(during):.2f}) "
            f"recovery_s={recovery_s:.1f} caught_up_s={caught_up_s:.1f} events={n} "
            f"unreachable_lines={err.count(f'cluster {REMOTE}: unreachable')}"
        )
        assert recovery_s <= 5.0, recovery_s
        # at the pace of before: not held up by the remote that is down (a request there
        # times out after 5 s; a wait for it would show as seconds per change)
        assert statistics.median(during) <= 3 * statistics.median(before) + 1.0, (before, during)
        assert await d.terminate() == 0


async def _limit_log(d: DaemonProcess, *, room: int = 160 * 1024) -> int:
    """Let ``d``'s files grow by ``room`` bytes at most (its log's, and its stderr's:
    the limit is per process); returns the hard limit to lift it to."""
    assert d.proc is not None
    files = [d.log, d.log.with_name(d.log.name + "-wal"), d.stderr_path]
    sizes = await asyncio.to_thread(lambda: [p.stat().st_size if p.exists() else 0 for p in files])
    _, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (max(sizes) + room, hard))
    return int(hard)


async def _log_full(d: DaemonProcess) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        status, body = await d.get("/readyz")
        return status == 503 and "event log cannot be written" in body
    return False


def _needs_prlimit() -> None:
    if not hasattr(resource, "prlimit"):
        pytest.skip("needs prlimit(2) (Linux) to set a file size limit on the running daemon")


def _daemon_writes(audit: list[AuditEvent], agent: str) -> list[AuditEvent]:
    """The writes a daemon sent (by its User-Agent), the Lease (coordination) aside."""
    return [a for a in audit if a.mutating and a.user_agent.endswith(f"({agent})") and a.resource != "leases"]


async def test_disk_full_on_the_log(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    """The log's files hit a size limit (RLIMIT_FSIZE, set on the running daemon as
    ``prlimit`` does: the kernel refuses the write past it, as a full disk refuses a
    write, and SQLite reports it) while the daemon installs the control plane; a user
    changes the spec meanwhile; then the limit is lifted."""
    _needs_prlimit()
    full_s = 12.0
    kc = fleet["master"].kubeconfig_path
    log = tmp_path / "log.db"
    audit: list[AuditEvent] = []
    fleet["master"].server.audit_log = audit
    d = await start_daemon(daemons, fleet, log, name="full")
    assert d.proc is not None
    # room for the first few dozen commits of the install, not for all of it
    hard = await _limit_log(d)
    limit, _ = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    await wait_for(lambda: _log_full(d), timeout=90, what="the daemon to report the full log")
    full_at = time.monotonic()
    _, body = await d.get("/readyz")
    assert "append failed, nothing was recorded" in body, body
    _, metrics = await d.get("/metrics")
    assert "federationd_event_log_writable 0.0" in metrics
    # a user's change while the log is full: observed, held, and applied later
    await _spec(fleet, mtls=True)
    await wait_for(lambda: time.monotonic() - full_at >= full_s, timeout=full_s + 5, what="the disk to stay full")
    assert d.proc.returncode is None, d.stderr()
    assert await _log_full(d)
    _, metrics = await d.get("/metrics")
    held = _gauge(metrics, "federationd_event_log_held_events")
    assert held >= 1, "the spec change waits in memory"
    # no write started once the daemon knew (a write already in flight may complete:
    # the request timeout bounds it)
    writes = _daemon_writes(audit, "full")
    late = [a for a in writes if a.received > full_at + 5.0]
    assert not late, late[:5]
    during = [a for a in writes if a.received > full_at]

    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    healed = time.monotonic()
    await wait_for(d.ready, timeout=30, what="ready again")
    recovery_s = time.monotonic() - healed
    await _available(fleet, d, generation=2)
    n = await _nothing_lost(d, log)
    err = d.stderr()
    assert err.count("event log cannot be written") == 1, err
    assert err.count("writable again") == 1, err
    assert "Traceback" not in err, err
    # every write the master saw from the daemon is recorded as a fact: object by object
    # for the converger's, one for one for status writes and Kubernetes Events (the
    # trust actuator's Secrets are recorded as trust facts, which its own tests check)
    events = await _events_all(log)
    writes = _daemon_writes(audit, "full")
    written = collections.Counter(
        (a.namespace, a.name) for a in writes if not a.subresource and a.resource not in ("events", "secrets")
    )
    facts = [e for e in events if e["type"] in ("ActuationApplied", "ActuationFailed")]
    recorded = collections.Counter(
        tuple(e["key"].rsplit("/", 2)[-2:]) for e in facts if e["verb"] in ("apply", "delete", "release")
    )
    assert written == recorded, (written - recorded, recorded - written)
    assert sum(a.subresource == "status" for a in writes) == sum(e["verb"] == "status" for e in facts)
    assert sum(a.resource == "events" for a in writes) == sum(e["verb"] == "event" for e in facts)
    before = sum(a.received < full_at for a in writes)
    after = sum(a.received > healed for a in writes)
    print(
        f"FAULT disk-full full_s={full_s:g} limit_kib={limit // 1024} held={held:g} writes_before={before} "
        f"writes_while_full={len(during)} writes_after={after} recovery_s={recovery_s:.1f} events={n} "
        f"recorded={len(facts)}"
    )
    assert after > 0, "the disk filled half-way through the install"
    assert await d.terminate() == 0


def _gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


async def test_leader_killed_mid_write(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    """Two daemons with ``--leader-elect``; the leader is SIGKILLed half-way through the
    install. The emulator's audit log (every request, with its User-Agent naming the
    instance) shows who wrote when."""
    lease_s, retry_s = 4.0, 0.5
    lease = ["--leader-elect", "--lease-duration", f"{lease_s:g}", "--renew-deadline", "3", "--retry-period", f"{retry_s:g}"]
    kc = fleet["master"].kubeconfig_path
    audit: list[AuditEvent] = []
    fleet["master"].server.audit_log = audit
    a = await start_daemon(daemons, fleet, tmp_path / "a.db", name="a", extra=lease)
    b = await start_daemon(daemons, fleet, tmp_path / "b.db", name="b", extra=lease)

    def holder() -> str:
        obj = fleet["master"].store.get("coordination.k8s.io/v1", "Lease", "federationd", "istio-system") or {}
        return str((obj.get("spec") or {}).get("holderIdentity") or "")

    await wait_for(lambda: holder() in ("a", "b"), timeout=30, what="a leader")
    leader, standby = (a, b) if holder() == "a" else (b, a)
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    # mid-write: once the leader has made a fifth of the install's writes
    await wait_for(lambda: len(_daemon_writes(audit, leader.name)) >= 20, timeout=60, what="the leader writing")
    assert await leader.terminate(signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()
    by_old = len(_daemon_writes(audit, leader.name))

    def acquired() -> list[AuditEvent]:
        return [
            e for e in audit
            if e.resource == "leases" and e.mutating and e.code < 300 and e.received > killed_at
            and e.user_agent.endswith(f"({standby.name})")
        ]

    await wait_for(lambda: bool(acquired()), timeout=lease_s * 4, what="takeover")
    takeover = acquired()[0]
    takeover_s = takeover.completed - killed_at
    await _available(fleet, standby)
    n = await _nothing_lost(standby, standby.log)

    old, new = _daemon_writes(audit, leader.name), _daemon_writes(audit, standby.name)
    assert new, "the new leader finished the install"
    # one writer at a time: every write of the old leader was answered before the new
    # leader's first one arrived, and the standby wrote nothing before it held the Lease
    assert max(e.completed for e in old) < min(e.received for e in new)
    assert min(e.received for e in new) > takeover.completed
    last_renewal = max(
        e.completed for e in audit
        if e.resource == "leases" and e.mutating and e.code < 300 and e.user_agent.endswith(f"({leader.name})")
    )
    # The standby counts the lease's expiry from when it last saw the record change (its
    # own clock, as client-go), up to one retry period after the renewal, and acquires at
    # its next retry: kill → takeover is at most the lease duration plus two (jittered)
    # retry periods, and at least the lease duration after the last renewal.
    assert takeover.completed - last_renewal >= lease_s
    assert takeover_s <= lease_s + 2 * 1.2 * retry_s, takeover_s
    first_write_s = min(e.received for e in new) - killed_at
    print(
        f"FAULT leader-killed lease_s={lease_s:g} retry_s={retry_s:g} takeover_s={takeover_s:.2f} "
        f"since_last_renewal_s={takeover.completed - last_renewal:.2f} first_write_s={first_write_s:.2f} "
        f"writes_old={by_old} writes_new={len(new)} events={n}"
    )
    assert await standby.terminate() == 0


async def test_a_leader_whose_log_is_full_steps_down(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    """Renewing the Lease is a write, and no write starts while the log cannot record:
    the leader whose log fills mid-install stops leading, the standby takes over and
    finishes, and the old leader, its log writable again, records what waited and stays
    a standby."""
    _needs_prlimit()
    lease_s = 4.0
    lease = ["--leader-elect", "--lease-duration", f"{lease_s:g}", "--renew-deadline", "3", "--retry-period", "0.5"]
    kc = fleet["master"].kubeconfig_path
    audit: list[AuditEvent] = []
    fleet["master"].server.audit_log = audit
    a = await start_daemon(daemons, fleet, tmp_path / "a.db", name="a", extra=lease)
    b = await start_daemon(daemons, fleet, tmp_path / "b.db", name="b", extra=lease)

    def holder() -> str:
        obj = fleet["master"].store.get("coordination.k8s.io/v1", "Lease", "federationd", "istio-system") or {}
        return str((obj.get("spec") or {}).get("holderIdentity") or "")

    await wait_for(lambda: holder() in ("a", "b"), timeout=30, what="a leader")
    leader, standby = (a, b) if holder() == "a" else (b, a)
    assert leader.proc is not None
    hard = await _limit_log(leader)
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    await wait_for(lambda: _log_full(leader), timeout=90, what="the leader's log full")
    full_at = time.monotonic()
    await wait_for(lambda: holder() == standby.name, timeout=lease_s * 4, what="the standby to take over")
    took_s = time.monotonic() - full_at
    await _available(fleet, standby)
    n = await _nothing_lost(standby, standby.log)
    old, new = _daemon_writes(audit, leader.name), _daemon_writes(audit, standby.name)
    assert old and new
    assert max(e.completed for e in old) < min(e.received for e in new), "one writer at a time"
    # space is back: the old leader records what waited, is ready, and leads no more
    resource.prlimit(leader.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    await wait_for(leader.ready, timeout=30, what="the old leader ready again")
    assert not (await leader.debug("converged"))["leader"] and holder() == standby.name
    events = await _events_all(leader.log)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["type"] for e in events if e["type"].startswith("Leadership")] == ["LeadershipAcquired", "LeadershipLost"]
    assert len(_daemon_writes(audit, leader.name)) == len(old), "no write from the old leader"
    print(f"FAULT leader-log-full takeover_after_full_s={took_s:.1f} writes_old={len(old)} writes_new={len(new)} events={n}")
    assert await leader.terminate() == 0
    assert await standby.terminate() == 0


async def test_stopping_while_the_log_is_full(fleet: Fleet, daemons: list[DaemonProcess], tmp_path: Path) -> None:
    """SIGTERM while facts wait for a full log: a clean exit within the grace period,
    without them; the next start, with space, observes the cluster again and converges."""
    _needs_prlimit()
    kc = fleet["master"].kubeconfig_path
    log = tmp_path / "log.db"
    d = await start_daemon(daemons, fleet, log, name="stop")
    await _limit_log(d)
    await kubectl(kc, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
    await wait_for(lambda: _log_full(d), timeout=90, what="the log full")
    await _spec(fleet, mtls=True)
    started = time.monotonic()
    assert await d.terminate() == 0, d.stderr()
    stop_s = time.monotonic() - started
    again = await start_daemon(daemons, fleet, log, name="again")
    await _available(fleet, again, generation=2)
    n = await _nothing_lost(again, log)
    print(f"FAULT disk-full-stop stop_s={stop_s:.1f} events={n}")
    assert await again.terminate() == 0
