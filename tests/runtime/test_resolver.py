"""HostnameResolver: load-balancer hostnames → ``HostnameResolved`` facts, appended only on
change, known-good IPs kept through failures, bounded, and driven by a fake resolver and a
fake clock (no DNS lookup ever leaves the process)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from events.types import ClusterName, Event, HostnameResolved
from federationd.watchers import resolver as resolver_mod
from federationd.watchers.resolver import (
    HostnameResolver,
    HostsFileError,
    ResolveError,
    hostname_key,
    hosts_file_resolver,
    load_hosts,
)
from tests.runtime.conftest import FakeClock, wait_for

EU = ClusterName("remote-eu")
US = ClusterName("remote-us")
ELB = "a1b2c3-123456.eu-west-1.elb.amazonaws.com"


class FakeLog:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.fail = 0  # refuse this many appends

    async def append(self, event: Event, /) -> object:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.events.append(event)
        return len(self.events)

    def resolved(self) -> list[HostnameResolved]:
        return [e for e in self.events if isinstance(e, HostnameResolved)]


class FakeDNS:
    """Answers from a table; counts lookups; can fail, block, or run slowly."""

    def __init__(self, table: dict[str, Any] | None = None) -> None:
        self.table: dict[str, Any] = dict(table or {})
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, host: str) -> Sequence[str]:
        self.calls.append(host)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            answer = self.table.get(host)
            if answer is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            if isinstance(answer, BaseException):
                raise answer
            return list(answer)
        finally:
            self.in_flight -= 1


def _resolver(log: FakeLog, dns: FakeDNS, clock: FakeClock | None = None, **kw: Any) -> HostnameResolver:
    return HostnameResolver(
        log,
        resolve=dns,
        clock=clock or FakeClock(),
        wall=lambda: 1_700_000_000.0,
        rng=random.Random(7),
        **kw,
    )


async def test_first_resolution_appends_one_fact() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24", "35.177.214.60", "3.8.50.24", "::1", "junk"]})
    r = _resolver(log, dns)
    r.watch(EU, ELB.upper() + ".")  # names are case-insensitive; the root dot is dropped
    appended = await r.refresh_once()
    assert appended == log.resolved()
    assert appended == [
        HostnameResolved(
            cluster=EU,
            key=hostname_key(ELB),
            time=1_700_000_000.0,
            hostname=ELB,
            ips=("3.8.50.24", "35.177.214.60"),  # IPv4 only, unique, numeric order
        )
    ]
    assert appended[0].key == f"Hostname/{ELB}"
    assert r.last(EU, ELB) == appended[0]


async def test_only_changes_are_appended() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    r = _resolver(log, dns)
    r.watch(EU, ELB)
    await r.refresh_once()
    for _ in range(3):
        assert await r.refresh_once() == []
    assert len(dns.calls) == 4
    dns.table[ELB] = ["3.8.50.24", "3.8.50.25"]
    [changed] = await r.refresh_once()
    assert changed.ips == ("3.8.50.24", "3.8.50.25")
    assert len(log.resolved()) == 2


async def test_failure_keeps_known_good_ips_and_reports_the_error() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    r = _resolver(log, dns)
    r.watch(EU, ELB)
    await r.refresh_once()
    dns.table[ELB] = None  # NXDOMAIN / resolver down
    [failed] = await r.refresh_once()
    assert failed.ips == ("3.8.50.24",)
    assert failed.error == "lookup failed: Name or service not known"
    assert await r.refresh_once() == []  # the same failure again: nothing new
    dns.table[ELB] = ResolveError("SERVFAIL")
    [other] = await r.refresh_once()
    assert (other.ips, other.error) == (("3.8.50.24",), "SERVFAIL")
    dns.table[ELB] = ["3.8.50.24"]
    [recovered] = await r.refresh_once()
    assert (recovered.ips, recovered.error) == (("3.8.50.24",), "")


async def test_a_hostname_that_never_resolved_has_only_the_error() -> None:
    log, dns = FakeLog(), FakeDNS({"empty.example": []})
    r = _resolver(log, dns)
    r.watch(EU, "missing.example")
    r.watch(EU, "empty.example")
    events = {e.hostname: e for e in await r.refresh_once()}
    assert events["missing.example"].ips == ()
    assert events["missing.example"].error.startswith("lookup failed")
    assert events["empty.example"].error == "no IPv4 address"


async def test_unexpected_resolver_errors_are_contained() -> None:
    log, dns = FakeLog(), FakeDNS({"bug.example": RuntimeError("secret-ish detail"), "ok.example": ["1.2.3.4"]})
    r = _resolver(log, dns)
    r.watch(EU, "bug.example")
    r.watch(EU, "ok.example")
    events = {e.hostname: e for e in await r.refresh_once()}
    assert events["bug.example"].error == "lookup failed: RuntimeError"  # message not echoed
    assert events["ok.example"].ips == ("1.2.3.4",)


async def test_lookup_timeout() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    dns.gate = asyncio.Event()  # never opened: the lookup hangs
    r = _resolver(log, dns, timeout=0.01)
    r.watch(EU, ELB)
    [event] = await r.refresh_once()
    assert event.error == "lookup timed out after 0.01s"
    assert dns.in_flight == 0  # the hung lookup was cancelled, not left running


async def test_static_hosts_answer_without_the_resolver() -> None:
    log, dns = FakeLog(), FakeDNS()
    r = _resolver(log, dns, hosts={"LB.Sim.Local": ["10.1.0.2", "10.1.0.1"]})
    r.watch(EU, "lb.sim.local")
    r.watch(EU, "192.0.2.7")  # an IP literal resolves to itself
    events = {e.hostname: e.ips for e in await r.refresh_once()}
    assert events == {"lb.sim.local": ("10.1.0.1", "10.1.0.2"), "192.0.2.7": ("192.0.2.7",)}
    assert dns.calls == []


def test_hosts_map_is_validated() -> None:
    with pytest.raises(HostsFileError):
        HostnameResolver(FakeLog(), hosts={"x": ["fd00::1"]})
    with pytest.raises(HostsFileError):
        HostnameResolver(FakeLog(), hosts={"x": "10.0.0.1"})


def test_load_hosts(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "# simulated load balancers\n"
        "10.1.0.2  lb-eu.sim.local  lb-eu\n"
        "10.1.0.1  LB-EU.sim.local   # second address of the same name\n"
        "::1       localhost6\n"
        "\n"
        "10.2.0.9\tlb-us.sim.local\n"
    )
    assert load_hosts(path) == {
        "lb-eu": ("10.1.0.2",),
        "lb-eu.sim.local": ("10.1.0.1", "10.1.0.2"),
        "lb-us.sim.local": ("10.2.0.9",),
    }
    path.write_text("10.1.0.2 ok\nnot-an-ip name\n")
    with pytest.raises(HostsFileError, match=":2:"):
        load_hosts(path)
    path.write_text("10.1.0.2\n")
    with pytest.raises(HostsFileError, match="without a hostname"):
        load_hosts(path)


async def test_one_lookup_per_hostname_per_pass_one_fact_per_cluster() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    r = _resolver(log, dns)
    r.watch(EU, ELB)
    r.watch(US, ELB)
    events = await r.refresh_once()
    assert dns.calls == [ELB]
    assert sorted(e.cluster for e in events) == [EU, US]


async def test_concurrency_is_bounded() -> None:
    hosts = [f"lb{i}.example" for i in range(7)]
    log, dns = FakeLog(), FakeDNS({h: [f"10.0.0.{i + 1}"] for i, h in enumerate(hosts)})
    dns.gate = asyncio.Event()
    r = _resolver(log, dns, concurrency=2)
    for h in hosts:
        r.watch(EU, h)
    task = asyncio.ensure_future(r.refresh_once())
    await wait_for(lambda: dns.in_flight == 2, what="two lookups in flight")
    dns.gate.set()
    events = await task
    assert dns.max_in_flight == 2
    assert len(events) == 7


async def test_unwatch_and_set_hostnames_and_forget_cluster() -> None:
    log, dns = FakeLog(), FakeDNS({"a.example": ["1.1.1.1"], "b.example": ["2.2.2.2"], "c.example": ["3.3.3.3"]})
    r = _resolver(log, dns)
    r.set_hostnames(EU, ["a.example", "b.example"])
    r.watch(US, "a.example")
    assert r.watched == {(EU, "a.example"), (EU, "b.example"), (US, "a.example")}
    await r.refresh_once()
    r.set_hostnames(EU, ["b.example", "c.example"])
    assert r.watched == {(EU, "b.example"), (EU, "c.example"), (US, "a.example")}
    [new] = await r.refresh_once()
    assert (new.cluster, new.hostname) == (EU, "c.example")
    r.unwatch(US, "a.example")
    r.forget_cluster(EU)
    assert r.watched == frozenset()
    assert r.last(EU, "b.example") is None
    assert r.last(US, "a.example") is not None  # unwatched, but its fact is remembered
    r.watch(US, "a.example")
    assert await r.refresh_once() == []  # same answer as the fact in the log


async def test_a_pair_unwatched_during_its_lookup_appends_nothing() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    dns.gate = asyncio.Event()
    r = _resolver(log, dns)
    r.watch(EU, ELB)
    task = asyncio.ensure_future(r.refresh_once())
    await wait_for(lambda: dns.in_flight == 1, what="lookup in flight")
    r.unwatch(EU, ELB)
    dns.gate.set()
    assert await task == []
    assert log.events == []
    assert r.watched == frozenset()


async def test_prime_from_the_log_avoids_duplicates() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    r = _resolver(log, dns)
    r.prime([HostnameResolved(cluster=EU, key=hostname_key(ELB), time=1.0, hostname=ELB, ips=("3.8.50.24",))])
    r.watch(EU, ELB)
    assert await r.refresh_once() == []


async def test_a_refused_append_is_retried() -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    r = _resolver(log, dns)
    r.watch(EU, ELB)
    log.fail = 1
    with pytest.raises(OSError):
        await r.refresh_once()
    assert r.last(EU, ELB) is None
    [event] = await r.refresh_once()
    assert event.ips == ("3.8.50.24",)


def test_bad_settings_are_refused() -> None:
    for kw in ({"interval": 0}, {"timeout": -1}, {"jitter": 1.0}, {"concurrency": 0}):
        with pytest.raises(ValueError):
            HostnameResolver(FakeLog(), **kw)


async def test_default_resolver_uses_the_loop_without_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {}

    async def fake_getaddrinfo(host: str, port: Any, **kw: Any) -> list[Any]:
        seen.update(host=host, port=port, **kw)
        tcp = socket.SOCK_STREAM
        return [
            (socket.AF_INET, tcp, 6, "", ("35.177.214.60", 0)),
            (socket.AF_INET, tcp, 6, "", ("3.8.50.24", 0)),
            (socket.AF_INET, tcp, 6, "", ("35.177.214.60", 0)),
        ]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    assert await resolver_mod.default_resolve(ELB) == ("3.8.50.24", "35.177.214.60")
    assert seen == {"host": ELB, "port": None, "family": socket.AF_INET, "type": socket.SOCK_STREAM}


# --- the background task, on a fake clock ----------------------------------------------------------


async def test_background_refresh_follows_the_clock(clock: FakeClock) -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"], "bad.example": None})
    async with _resolver(log, dns, clock, interval=30.0, error_interval=5.0, jitter=0.1) as r:
        r.watch(EU, ELB)
        # A newly watched hostname is resolved at once, without the clock moving.
        await wait_for(lambda: len(log.resolved()) == 1, what="first fact")
        await wait_for(lambda: clock.sleepers == 1, what="resolver asleep")
        assert clock.slept[-1] == pytest.approx(30.0, rel=0.1)

        r.watch(EU, "bad.example")
        await wait_for(lambda: len(log.resolved()) == 2, what="second hostname resolved at once")
        assert log.resolved()[-1].error
        await wait_for(lambda: clock.sleepers == 1, what="resolver asleep again")
        # The failing one comes back after ~5 s (jittered); the good one is not due yet.
        calls = len(dns.calls)
        clock.advance(5.6)
        await wait_for(lambda: len(dns.calls) == calls + 1, what="failed hostname retried")
        assert dns.calls[-1] == "bad.example"

        # The answer changes; after the interval the new IPs are appended.
        dns.table[ELB] = ["3.8.50.99"]
        for _ in range(8):  # 40 s in steps, longer than 30 s + 10 % jitter
            await wait_for(lambda: clock.sleepers == 1, what="resolver asleep")
            clock.advance(5.0)
        await wait_for(lambda: log.resolved()[-1].ips == ("3.8.50.99",), what="changed IPs appended")
        # Failing repeatedly with the same error appended nothing more for bad.example.
        assert sum(1 for e in log.resolved() if e.hostname == "bad.example") == 1
        task = r._task
    assert task is not None and task.done()


async def test_background_loop_survives_a_refused_append(clock: FakeClock) -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    log.fail = 1
    async with _resolver(log, dns, clock, error_interval=5.0) as r:
        r.watch(EU, ELB)
        await wait_for(lambda: len(dns.calls) == 1 and clock.sleepers == 1, what="first attempt")
        assert log.events == []
        clock.advance(6.0)  # retried at the error interval
        await wait_for(lambda: len(log.resolved()) == 1, what="recorded on retry")


async def test_stop_cancels_an_in_flight_lookup(clock: FakeClock) -> None:
    log, dns = FakeLog(), FakeDNS({ELB: ["3.8.50.24"]})
    dns.gate = asyncio.Event()
    r = _resolver(log, dns, clock)
    await r.start()
    r.watch(EU, ELB)
    await wait_for(lambda: dns.in_flight == 1, what="lookup in flight")
    await r.stop()
    assert dns.in_flight == 0
    await r.stop()  # idempotent


async def test_hosts_file_resolver_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    dns = FakeDNS({"real.example": ["3.8.50.24"]})
    resolve = hosts_file_resolver(path, fallback=dns)
    # no file yet: everything goes to DNS
    assert list(await resolve("real.example")) == ["3.8.50.24"]
    with pytest.raises(socket.gaierror):
        await resolve("lb.sim.local")
    await asyncio.to_thread(path.write_text, "203.0.113.7 lb.sim.local\n")
    assert list(await resolve("LB.sim.local.")) == ["203.0.113.7"]
    # rewritten while in use: the next lookup sees it
    await asyncio.to_thread(path.write_text, "203.0.113.8 lb.sim.local\n")
    assert list(await resolve("lb.sim.local")) == ["203.0.113.8"]
    # a malformed rewrite keeps the last good content
    await asyncio.to_thread(path.write_text, "garbage lb.sim.local\n")
    assert list(await resolve("lb.sim.local")) == ["203.0.113.8"]
    assert dns.calls == ["real.example", "lb.sim.local"]


async def test_a_resolver_reading_a_hosts_file_appends_its_changes(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    log = FakeLog()
    r = HostnameResolver(log, resolve=hosts_file_resolver(path, fallback=FakeDNS()), wall=lambda: 1.0)
    r.watch(EU, "lb.sim.local")
    await r.refresh_once()
    assert log.resolved()[-1].error and log.resolved()[-1].ips == ()
    await asyncio.to_thread(path.write_text, "203.0.113.7 lb.sim.local\n")
    await r.refresh_once()
    assert log.resolved()[-1] == HostnameResolved(
        cluster=EU, key=hostname_key("lb.sim.local"), time=1.0, hostname="lb.sim.local", ips=("203.0.113.7",)
    )
    await r.refresh_once()
    assert len(log.resolved()) == 2
