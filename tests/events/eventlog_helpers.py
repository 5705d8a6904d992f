"""Shared by the event-log tests: realistic events and a condition wait with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from events.types import ClusterName, Event, GatewayAddressesObserved, NodeLocalityObserved

CLUSTERS = ("master", "remote-eu", "remote-us")


def gateway(i: int, cluster: str = "remote-eu", *, key: str | None = None) -> Event:
    """A gateway-addresses fact of a few hundred bytes, distinct per ``i``."""
    name = f"istio-ingressgateway-{i % 7}"
    return GatewayAddressesObserved(
        cluster=ClusterName(cluster),
        key=key if key is not None else f"Service/istio-system/{name}",
        time=1_700_000_000.0 + i,
        namespace="istio-system",
        name=name,
        service_type="LoadBalancer",
        ips=(f"10.{i % 250}.{(i // 250) % 250}.1",),
        hostnames=(f"a{i:08d}.elb.eu-west-1.amazonaws.com",),
        node_ports={"http2": 31380, "https": 31390, "tls": 31400},
        ports={"http2": 80, "https": 443, "tls": 15443},
    )


def node(i: int, cluster: str = "master") -> Event:
    return NodeLocalityObserved(
        cluster=ClusterName(cluster),
        key=f"Node/node-{i}",
        time=1_700_000_000.0 + i,
        node=f"node-{i}",
        region="eu-west-1",
        zone=f"eu-west-1{'abc'[i % 3]}",
        addresses=(f"192.168.0.{i % 250}",),
    )


def mixed(n: int) -> list[Event]:
    """``n`` events over several clusters and types, deterministic."""
    out: list[Event] = []
    for i in range(n):
        cluster = CLUSTERS[i % len(CLUSTERS)]
        out.append(gateway(i, cluster) if i % 4 else node(i, cluster))
    return out


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0
) -> None:
    """Wait until ``condition()`` holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)
