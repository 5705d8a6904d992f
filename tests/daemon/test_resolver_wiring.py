"""The daemon's hostname resolution is ``watchers.resolver.HostnameResolver``: fed the
gateway hostnames from the projection state, reading ``--hosts-file`` as it changes, and
primed from the restored state so a restart appends no resolution it already recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from federationd.sim import ClusterSpec, Fleet

from .conftest import DaemonProcess, install_crds, kubectl, start_daemon
from .test_e2e import SEED_000, _events_all, _quiet, _status
from .waiting import wait_for


async def test_resolutions_survive_a_restart_without_being_appended_again(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    hosts = tmp_path / "hosts"
    log = tmp_path / "log.db"
    async with Fleet([ClusterSpec(name="master", lb="hostname")], directory=tmp_path / "fleet") as fleet:
        install_crds(fleet)
        await kubectl(fleet["master"].kubeconfig_path, "apply", "-n", "istio-system", "-f", "-", stdin=SEED_000)
        master = fleet["master"]

        def lb_hostname() -> str | None:
            return master.behaviours.load_balancer_address("istio-system", "istio-ingressgateway")

        extra = ["--hosts-file", str(hosts), "--resolve-period", "0.2"]
        d = await start_daemon(daemons, fleet, log, extra=extra)
        await wait_for(lambda: lb_hostname() is not None, timeout=30, what="a load-balancer hostname")
        host = lb_hostname()
        assert host is not None
        await asyncio.to_thread(hosts.write_text, f"203.0.113.7 {host}\n")
        await wait_for(lambda: _status(fleet).get("GatewayAddress") == ["203.0.113.7"], timeout=30, what="resolved")
        await _quiet(d, resyncs=1)
        resolved = [e for e in await _events_all(log) if e["type"] == "HostnameResolved"]
        # a failure before the file was written, then the answer; re-resolving an
        # unchanged answer every 0.2 s appended nothing more
        assert resolved[-1]["ips"] == ["203.0.113.7"] and resolved[-1]["key"] == f"Hostname/{host}"
        assert len(resolved) <= 2, resolved
        assert await d.terminate() == 0

        head = len(await _events_all(log))
        d2 = await start_daemon(daemons, fleet, log, name="d2", extra=extra)
        await _quiet(d2, resyncs=2)
        assert "HostnameResolved" not in [e["type"] for e in (await _events_all(log))[head:]]
        # and it keeps resolving: the load balancer's IP moves
        await asyncio.to_thread(hosts.write_text, f"203.0.113.9 {host}\n")
        await wait_for(lambda: _status(fleet).get("GatewayAddress") == ["203.0.113.9"], timeout=30, what="re-resolved")
        assert await d2.terminate() == 0
