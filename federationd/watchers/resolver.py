"""Load-balancer hostnames → IPv4 addresses, as ``HostnameResolved`` facts.

Clouds such as AWS give a LoadBalancer Service a *hostname*, but Istio 1.1/1.2 only use
gateways given as IP addresses in ``meshNetworks``. The gateway watcher records the
hostnames it sees (``GatewayAddressesObserved.hostnames``); whoever owns that watcher
tells a :class:`HostnameResolver` which ``(cluster, hostname)`` pairs to keep resolved,
and the resolver appends ``HostnameResolved(cluster, key="Hostname/<host>", hostname,
ips, error)`` to the log, which projections join with the gateway
(``projections.derive.gateway_addresses``).

Shape, and why:

* **Facts only when they change.** A hostname is re-resolved periodically (``interval``,
  30 s by default, jittered so many hostnames and many daemons do not resolve in
  lockstep), but an event is appended only when the IPs or the error differ from the
  last one appended for that ``(cluster, hostname)``. A steady mesh appends nothing.
* **A failed re-resolution keeps the known-good IPs.** DNS hiccups (a timeout, SERVFAIL,
  a resolver restart) must not pull a healthy gateway out of ``meshNetworks`` and cut
  cross-cluster traffic; the fact carries the error *and* the last IPs, and projections
  keep routing while status can show the error. A hostname that never resolved has no
  IPs, only the error. When the load balancer really goes away, the gateway watcher
  stops reporting its hostname and the resolver is told to drop it. Failed hostnames are
  retried sooner (``error_interval``, 5 s by default): a new cloud load balancer's name
  often takes a minute to appear in DNS.
* **Injectable everything.** The lookup (``resolve``; by default the event loop's
  ``getaddrinfo``, IPv4, unique, sorted), the clock that schedules re-resolution, the
  wall clock stamped on events, and the jitter source. A static ``hosts`` map (like
  ``/etc/hosts``, see :func:`load_hosts`) answers simulated hostnames without DNS;
  :func:`hosts_file_resolver` does the same from a file that changes while it runs
  (``--hosts-file``, used by ``make demo`` and the end-to-end tests).
* **Bounded.** Every lookup has a timeout; at most ``concurrency`` lookups run at once;
  a hostname watched in several clusters is looked up once per pass. ``start``/``stop``
  own one task and leave nothing behind.
* **Ordered.** Passes never overlap, so an older answer can never be appended after a
  newer one.

No secret is involved: a hostname and its public addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Protocol

import msgspec

from events.types import ClusterName, Event, HostnameResolved
from federationd.cancellation import cancel_and_wait
from federationd.clusters.clock import REAL_CLOCK, Clock

__all__ = [
    "Appender",
    "HostnameResolver",
    "HostsFileError",
    "ResolveError",
    "ResolveFn",
    "default_resolve",
    "hostname_key",
    "hosts_file_resolver",
    "load_hosts",
]

log = logging.getLogger(__name__)

#: An async lookup: hostname → IPv4 addresses (any order, duplicates allowed).
ResolveFn = Callable[[str], Awaitable[Sequence[str]]]
Key = tuple[ClusterName, str]


class Appender(Protocol):
    """Where facts go: ``events.log.EventLog`` (or a fake in tests)."""

    async def append(self, event: Event, /) -> object: ...


class ResolveError(Exception):
    """A lookup failed; the message (safe to record) says why. Injected resolvers raise
    this to report a failure in their own words."""


class HostsFileError(ValueError):
    """A hosts map or file that cannot be used (names the line, never guesses)."""


class _Outcome(msgspec.Struct, frozen=True):
    ips: tuple[str, ...] = ()
    error: str = ""


def hostname_key(hostname: str) -> str:
    """The event key of a hostname fact."""
    return f"Hostname/{hostname}"


def _normalise(hostname: str) -> str:
    return hostname.strip().rstrip(".").lower()


def _ipv4_sorted(addresses: Iterable[str]) -> tuple[str, ...]:
    """Valid IPv4 addresses only, unique, in numeric order."""
    found: set[ipaddress.IPv4Address] = set()
    for a in addresses:
        try:
            ip = ipaddress.ip_address(str(a).strip())
        except ValueError:
            continue
        if isinstance(ip, ipaddress.IPv4Address):
            found.add(ip)
    return tuple(str(ip) for ip in sorted(found))


async def default_resolve(hostname: str) -> Sequence[str]:
    """The system resolver through the running loop: IPv4 addresses, unique, sorted."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(hostname, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return _ipv4_sorted(str(info[4][0]) for info in infos)


def load_hosts(path: str | PathLike[str]) -> dict[str, tuple[str, ...]]:
    """A hosts file (``/etc/hosts`` format: ``IP name [alias…]``, ``#`` comments) as a
    map hostname → IPv4 addresses. A name on several lines gets every address; IPv6
    lines are skipped (the resolver answers IPv4 only); a malformed line is an error."""
    out: dict[str, set[str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split("#", 1)[0].split()
            if not fields:
                continue
            try:
                ip = ipaddress.ip_address(fields[0])
            except ValueError:
                raise HostsFileError(f"{path}:{lineno}: the first field is not an IP address") from None
            if len(fields) < 2:
                raise HostsFileError(f"{path}:{lineno}: an address without a hostname")
            if not isinstance(ip, ipaddress.IPv4Address):
                continue
            for name in fields[1:]:
                out.setdefault(_normalise(name), set()).add(str(ip))
    return {name: _ipv4_sorted(ips) for name, ips in sorted(out.items())}


def hosts_file_resolver(
    path: str | PathLike[str], *, fallback: ResolveFn | None = None
) -> ResolveFn:
    """A lookup answering from a hosts file (see :func:`load_hosts`) that is read again
    at every lookup, then from ``fallback`` (DNS by default) for names it does not list.

    For a file rewritten while the daemon runs (``federationd run --hosts-file``: the
    demo and tests add load-balancer names as they appear and move their IPs), where a
    map loaded once at start would go stale. The file is tiny and looked at once per
    hostname per pass. A missing file lists nothing; a malformed one keeps the last map
    that loaded (and says so once per change of problem)."""
    ask = fallback or default_resolve
    last: dict[str, tuple[str, ...]] = {}
    problem = ""

    async def resolve(hostname: str) -> Sequence[str]:
        nonlocal last, problem
        try:
            last = await asyncio.to_thread(load_hosts, path)
            problem = ""
        except FileNotFoundError:
            last, problem = {}, ""
        except (HostsFileError, OSError, UnicodeDecodeError) as e:
            text = str(e) if isinstance(e, HostsFileError) else f"{path}: {type(e).__name__}"
            if text != problem:
                log.warning("hosts file not read, keeping its last content: %s", text)
            problem = text
        ips = last.get(_normalise(hostname))
        if ips:
            return ips
        return await ask(hostname)

    return resolve


def _check_hosts(hosts: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, ips in hosts.items():
        if isinstance(ips, str):
            raise HostsFileError(f"hosts[{name!r}]: expected a list of addresses")
        valid = _ipv4_sorted(ips)
        if len(valid) != len(set(ips)):
            raise HostsFileError(f"hosts[{name!r}]: every address must be IPv4")
        out[_normalise(name)] = valid
    return out


class HostnameResolver:
    """Keeps watched ``(cluster, hostname)`` pairs resolved and appends a
    ``HostnameResolved`` fact whenever a result changes.

    Use as ``async with HostnameResolver(log) as r:`` (or ``await r.start()`` /
    ``await r.stop()``); tell it what to watch with :meth:`watch`, :meth:`unwatch`,
    :meth:`set_hostnames` and :meth:`forget_cluster` (all synchronous, safe to call from
    reflector callbacks). A newly watched hostname is resolved at once; then every
    ``interval`` seconds (``error_interval`` while it fails), with ``jitter`` as a
    fraction of the delay. :meth:`refresh_once` resolves everything now and is what
    tests drive instead of waiting.
    """

    def __init__(
        self,
        log: Appender,
        *,
        resolve: ResolveFn | None = None,
        hosts: Mapping[str, Sequence[str]] | None = None,
        interval: float = 30.0,
        error_interval: float = 5.0,
        jitter: float = 0.1,
        timeout: float = 5.0,
        concurrency: int = 8,
        clock: Clock = REAL_CLOCK,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0 or error_interval <= 0 or timeout <= 0:
            raise ValueError("interval, error_interval and timeout must be positive")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._log = log
        self._resolve: ResolveFn = resolve or default_resolve
        self._hosts = _check_hosts(hosts or {})
        self._interval = interval
        self._error_interval = min(error_interval, interval)
        self._jitter = jitter
        self._timeout = timeout
        self._concurrency = concurrency
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        # When each watched pair is next due (clock time); new pairs are due at once.
        self._due: dict[Key, float] = {}
        # The last fact appended (or primed) per pair: the change filter and the
        # known-good IPs kept through failures.
        self._last: dict[Key, HostnameResolved] = {}
        self._wake = asyncio.Event()
        self._pass_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- what to watch ----------------------------------------------------------------------

    def watch(self, cluster: ClusterName, hostname: str) -> None:
        key = (cluster, _normalise(hostname))
        if key not in self._due:
            self._due[key] = -math.inf
            self._wake.set()

    def unwatch(self, cluster: ClusterName, hostname: str) -> None:
        """Stop resolving a pair. Its last fact stays in the log (and in memory, so
        watching it again appends only if the answer differs)."""
        self._due.pop((cluster, _normalise(hostname)), None)

    def set_hostnames(self, cluster: ClusterName, hostnames: Iterable[str]) -> None:
        """Watch exactly ``hostnames`` in ``cluster`` (what a gateway fact lists)."""
        wanted = {_normalise(h) for h in hostnames}
        for c, h in list(self._due):
            if c == cluster and h not in wanted:
                del self._due[(c, h)]
        for h in sorted(wanted):
            self.watch(cluster, h)

    def forget_cluster(self, cluster: ClusterName) -> None:
        """A cluster left (``ClusterRemoved`` drops its facts): forget everything."""
        for key in [k for k in self._due if k[0] == cluster]:
            del self._due[key]
        for key in [k for k in self._last if k[0] == cluster]:
            del self._last[key]

    def prime(self, events: Iterable[Event]) -> None:
        """Seed the change filter from facts already in the log (after a restart), so an
        unchanged answer is not appended again."""
        for e in events:
            if isinstance(e, HostnameResolved):
                self._last[(e.cluster, _normalise(e.hostname))] = e

    @property
    def watched(self) -> frozenset[Key]:
        return frozenset(self._due)

    def last(self, cluster: ClusterName, hostname: str) -> HostnameResolved | None:
        """The last fact appended for a pair."""
        return self._last.get((cluster, _normalise(hostname)))

    # --- resolving ----------------------------------------------------------------------------

    async def _lookup(self, hostname: str) -> _Outcome:
        if hostname in self._hosts:
            ips = self._hosts[hostname]
            return _Outcome(ips=ips) if ips else _Outcome(error="no IPv4 address")
        literal = _ipv4_sorted([hostname])
        if literal:
            return _Outcome(ips=literal)
        try:
            async with asyncio.timeout(self._timeout):
                answer = await self._resolve(hostname)
        except TimeoutError:
            return _Outcome(error=f"lookup timed out after {self._timeout:g}s")
        except ResolveError as e:
            return _Outcome(error=str(e) or "lookup failed")
        except OSError as e:  # socket.gaierror included
            return _Outcome(error=f"lookup failed: {e.strerror or type(e).__name__}")
        except Exception as e:  # an injected resolver's bug must not stop the others
            return _Outcome(error=f"lookup failed: {type(e).__name__}")
        ips = _ipv4_sorted(answer)
        return _Outcome(ips=ips) if ips else _Outcome(error="no IPv4 address")

    def _delay(self, base: float) -> float:
        return base * (1.0 + self._jitter * (2.0 * self._rng.random() - 1.0))

    async def _pass(self, keys: Iterable[Key]) -> list[HostnameResolved]:
        """Resolve ``keys`` (each hostname once), append what changed, reschedule them."""
        async with self._pass_lock:
            todo = sorted(k for k in set(keys) if k in self._due)
            if not todo:
                return []
            semaphore = asyncio.Semaphore(self._concurrency)
            outcomes: dict[str, _Outcome] = {}

            async def one(hostname: str) -> None:
                async with semaphore:
                    outcomes[hostname] = await self._lookup(hostname)

            async with asyncio.TaskGroup() as tg:
                for hostname in sorted({h for _, h in todo}):
                    tg.create_task(one(hostname))

            appended: list[HostnameResolved] = []
            now = self._clock.now()
            for key in todo:
                # Provisional: if the log refuses an append below, these retry soon.
                if key in self._due:
                    self._due[key] = now + self._delay(self._error_interval)
            for key in todo:
                if key not in self._due:
                    continue  # unwatched while it was being looked up
                out = outcomes[key[1]]
                event = self._fact(key, out)
                if event is not None:
                    # Remember only once recorded: a failed append is retried.
                    await self._log.append(event)
                    self._last[key] = event
                    appended.append(event)
                if key in self._due:
                    base = self._error_interval if out.error else self._interval
                    self._due[key] = now + self._delay(base)
            return appended

    def _fact(self, key: Key, out: _Outcome) -> HostnameResolved | None:
        prev = self._last.get(key)
        ips = out.ips if not out.error else (tuple(prev.ips) if prev is not None else ())
        if prev is not None and tuple(prev.ips) == ips and prev.error == out.error:
            return None
        cluster, hostname = key
        return HostnameResolved(
            cluster=cluster,
            key=hostname_key(hostname),
            time=self._wall(),
            hostname=hostname,
            ips=ips,
            error=out.error,
        )

    async def refresh_once(self) -> list[HostnameResolved]:
        """Resolve every watched pair now; returns the facts appended."""
        return await self._pass(list(self._due))

    async def refresh_due(self) -> list[HostnameResolved]:
        """Resolve the pairs whose time has come (what the background task runs)."""
        now = self._clock.now()
        return await self._pass([k for k, due in self._due.items() if due <= now])

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="hostname-resolver"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)

    async def __aenter__(self) -> HostnameResolver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh_due()
            except Exception as e:
                # The log refused an append; those facts are retried on the next pass.
                log.warning("hostname resolution: could not record a result: %s", type(e).__name__)
            next_due = min(self._due.values(), default=math.inf)
            await self._sleep_until(next_due)

    async def _sleep_until(self, due: float) -> None:
        """Until ``due`` (clock time) or until :meth:`watch` adds a pair."""
        if self._wake.is_set():
            return
        delay = due - self._clock.now()
        if delay <= 0:
            return
        waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
        if math.isfinite(delay):
            waiters.append(asyncio.ensure_future(self._clock.sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
