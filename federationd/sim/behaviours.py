"""What a live cluster does on its own: cloud load balancers, Nodes, and (through
``workloads``) the controllers, scheduler and kubelets that run Pods.

Controllers of a real cluster react to objects; these do the same, driven by the
store's change listener and the event loop's timers (one pending timer per object, no
polling loop): a Service of type LoadBalancer receives an address after ``lb_delay``;
Nodes carry the cluster's region and zone labels, addresses and a ``podCIDR``;
workloads get ReplicaSets and Pods that the kubelet runs after ``ready_delay``, and the
Endpoints and EndpointSlices of selector Services list their Pods (see
:mod:`federationd.sim.workloads`).

Each behaviour can be switched off (``lb_enabled``, ``kubelet_enabled`` — the workload
controllers, scheduler and kubelets together — and ``endpoints_enabled``) so a test can
show that a result really came from it; one workload can be kept unready
(``hold_ready``/``release_ready``), as Pods that never pass their readiness probe would
keep it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

from federationd.sim import errors
from federationd.sim.injection import Webhooks
from federationd.sim.store import Change, Obj, Store, rfc3339
from federationd.sim.workloads import Controllers, KeyedTimers, create_kubeadm_dns


def _minor(git_version: str) -> int:
    parts = git_version.lstrip("v").split(".")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 99


class Behaviours:
    """The controllers of one simulated cluster (``cluster.behaviours``)."""

    def __init__(
        self,
        store: Store,
        *,
        index: int,
        region: str,
        zones: tuple[str, ...],
        lb: str = "ip",
        lb_delay: float = 0.05,
        ready_delay: float = 0.05,
        nodes: int = 3,
        kubelet_version: str = "v1.32.0",
        ca_pem: bytes = b"",
    ) -> None:
        if lb not in ("ip", "hostname"):
            raise ValueError('lb must be "ip" or "hostname"')
        self.store = store
        self.index = index
        self.region = region
        self.zones = zones
        self.lb = lb
        self.lb_delay = lb_delay
        self.ready_delay = ready_delay
        #: what Nodes report as their kubelet and kube-proxy version (the cluster's release)
        self.kubelet_version = kubelet_version
        self.lb_enabled = True
        self._timers = KeyedTimers()
        self._next_lb = 1
        self._lb_addresses: dict[tuple[str, str], str] = {}
        #: the workload controllers, scheduler, kubelets and endpoints controllers
        self.controllers = Controllers(store, index=index, ready_delay=ready_delay, ca_pem=ca_pem)
        #: mutating admission webhooks (Istio's sidecar injector)
        self.webhooks = Webhooks(store)
        store.admission.append(self.webhooks.admit)
        store.listeners.append(self._on_change)
        self._create_nodes(nodes)
        create_kubeadm_dns(store, _minor(kubelet_version))

    # ------------------------------------------------------------------ nodes

    def _create_nodes(self, count: int) -> None:
        for i in range(count):
            zone = self.zones[i % len(self.zones)] if self.zones else ""
            name = f"node-{i}"
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                # the kubelet sets the deprecated beta labels too (initialNode:
                # kubeletapis.LabelOS / LabelArch), and charts still select on them
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/region": self.region,
                "failure-domain.beta.kubernetes.io/region": self.region,
            }
            if zone:
                labels["topology.kubernetes.io/zone"] = zone
                labels["failure-domain.beta.kubernetes.io/zone"] = zone
            self.store.create(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"podCIDR": f"10.{self.index + 10}.{i}.0/24"}}
            )
            self.store.apply_status(
                "v1",
                "Node",
                name,
                "",
                {
                    "addresses": [
                        {"type": "InternalIP", "address": f"10.{self.index}.0.{i + 10}"},
                        {"type": "ExternalIP", "address": f"192.0.{2 + self.index % 250}.{i + 10}"},
                        {"type": "Hostname", "address": name},
                    ],
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                         "lastHeartbeatTime": rfc3339(self.store.clock()), "lastTransitionTime": rfc3339(self.store.clock())}
                    ],
                    "capacity": {"cpu": "4", "ephemeral-storage": "102400Mi", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "ephemeral-storage": "102400Mi", "memory": "16Gi", "pods": "110"},
                    "nodeInfo": {"kubeletVersion": self.kubelet_version, "operatingSystem": "linux", "architecture": "amd64",
                                 "containerRuntimeVersion": "containerd://1.7.0", "kernelVersion": "6.1.0", "osImage": "sim",
                                 "kubeProxyVersion": self.kubelet_version, "machineID": "", "systemUUID": "", "bootID": ""},
                },
            )

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, key: tuple[str, str, str, str], delay: float, fn: Callable[[], None]) -> None:
        self._timers.schedule(key, delay, fn)

    def close(self) -> None:
        self._timers.close()
        self.controllers.close()

    def pending(self) -> int:
        return len(self._timers) + self.controllers.pending()

    def _on_change(self, ch: Change) -> None:
        self.controllers.on_change(ch)
        if ch.type == "DELETED":
            return
        if ch.resource == ("", "services"):
            self._on_service(ch)

    # ------------------------------------------------------------------ load balancers

    def _lb_address(self, namespace: str, name: str) -> str:
        key = (namespace, name)
        addr = self._lb_addresses.get(key)
        if addr is None:
            if self.lb == "hostname":
                h = hashlib.sha256(f"{self.index}/{namespace}/{name}".encode()).hexdigest()[:16]
                addr = f"a{h}-{self.index}.{self.region}.elb.amazonaws.com"
            else:
                addr = str(ipaddress.IPv4Address("35.0.0.0") + self.index * 65536 + self._next_lb)
                self._next_lb += 1
            self._lb_addresses[key] = addr
        return addr

    def _on_service(self, ch: Change) -> None:
        if not self.lb_enabled:
            return
        spec = ch.obj.get("spec") or {}
        ingress = ((ch.obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        if spec.get("type") != "LoadBalancer" or ingress:
            return
        self._schedule(("lb", ch.namespace, ch.name, ""), self.lb_delay, lambda: self._assign_lb(ch.namespace, ch.name))

    def _assign_lb(self, namespace: str, name: str) -> None:
        cur = self.store.get("v1", "Service", name, namespace)
        if cur is None or not self.lb_enabled or (cur.get("spec") or {}).get("type") != "LoadBalancer":
            return
        addr = self._lb_address(namespace, name)
        entry = {"hostname": addr} if self.lb == "hostname" else {"ip": addr}
        self.set_load_balancer(namespace, name, [entry])

    def set_load_balancer(self, namespace: str, name: str, ingress: list[dict[str, Any]]) -> Obj:
        """Set (or with ``[]`` remove) a Service's load-balancer ingress, as the cloud would."""
        cur = self.store.get("v1", "Service", name, namespace)
        if cur is None:
            raise errors.not_found("services", name)
        status = dict(cur.get("status") or {})
        status["loadBalancer"] = {"ingress": ingress} if ingress else {}
        return self.store.apply_status("v1", "Service", name, namespace, status)

    def load_balancer_address(self, namespace: str, name: str) -> str | None:
        cur = self.store.get("v1", "Service", name, namespace)
        ing = ((cur or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return (ing[0].get("ip") or ing[0].get("hostname")) if ing else None

    # ------------------------------------------------------------------ workloads

    @property
    def kubelet_enabled(self) -> bool:
        """Whether the workload controllers, the scheduler and the kubelets run."""
        return self.controllers.enabled

    @kubelet_enabled.setter
    def kubelet_enabled(self, on: bool) -> None:
        was, self.controllers.enabled = self.controllers.enabled, on
        if on and not was:
            self.controllers.resync()

    @property
    def endpoints_enabled(self) -> bool:
        """Whether the endpoints and endpointslice controllers run."""
        return self.controllers.endpoints_enabled

    @endpoints_enabled.setter
    def endpoints_enabled(self, on: bool) -> None:
        self.controllers.endpoints_enabled = on

    def sync_endpoints(self, namespace: str) -> None:
        """Write the Endpoints and EndpointSlices of every selector Service in ``namespace`` now."""
        self.controllers.sync_endpoints(namespace)

    def hold_ready(self, namespace: str, name: str) -> None:
        """Keep the new Pods of this workload (or this Pod) from becoming Ready until
        :meth:`release_ready`: a rollout of it stalls, its status stays unready."""
        self.controllers.held.add((namespace, name))

    def release_ready(self, namespace: str, name: str) -> None:
        self.controllers.release(namespace, name)

    def restart_pod(self, namespace: str, name: str) -> str:
        """Reschedule a Pod: it keeps its name and gets a new IP (returned)."""
        return self.controllers.restart(namespace, name)

    def set_api_endpoint(self, ip: str, port: int) -> None:
        """Point ``default/kubernetes`` at the API server's address."""
        self.controllers.set_api_endpoint(ip, port)
