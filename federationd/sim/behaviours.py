"""What a live cluster does on its own: cloud load balancers, kubelets, node localities.

Controllers of a real cluster react to objects; these do the same, driven by the
store's change listener and the event loop's timers (one pending timer per object, no
polling loop): a Service of type LoadBalancer receives an address after ``lb_delay``;
Deployments, DaemonSets and StatefulSets report ready replicas after ``ready_delay``;
selected workloads get Pods with IPs (which ``restart_pod`` changes, as a rescheduled
pod would); the Endpoints of selector Services list their ready Pods, as the endpoints
controller does; Nodes carry the cluster's region and zone labels and addresses.

Each behaviour can be switched off (``lb_enabled``, ``kubelet_enabled``,
``endpoints_enabled``) so a test can show that a result really came from it; one
workload can be kept unready (``hold_ready``/``release_ready``), as a pod that never
passes its readiness probe would keep it.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

from federationd.sim import errors
from federationd.sim.selectors import parse_label_selector
from federationd.sim.store import Change, Obj, Store, deep_copy, rfc3339

_WORKLOADS = {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets")}


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
        self.kubelet_enabled = True
        #: the endpoints controller: Endpoints of selector Services list their ready Pods
        self.endpoints_enabled = True
        #: workloads (namespace, name) or a predicate that get Pods with IPs
        self._pod_workloads: set[tuple[str, str]] = set()
        self._pod_predicate: Callable[[Obj], bool] | None = None
        #: workloads (namespace, name) whose status kubelet-lite leaves alone
        self._held: set[tuple[str, str]] = set()
        self._timers: dict[tuple[str, str, str, str], asyncio.TimerHandle] = {}
        self._next_lb = 1
        self._next_pod_ip = 1
        self._lb_addresses: dict[tuple[str, str], str] = {}
        store.listeners.append(self._on_change)
        self._create_nodes(nodes)

    # ------------------------------------------------------------------ nodes

    def _create_nodes(self, count: int) -> None:
        for i in range(count):
            zone = self.zones[i % len(self.zones)] if self.zones else ""
            name = f"node-{i}"
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
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
                    "nodeInfo": {"kubeletVersion": self.kubelet_version, "operatingSystem": "linux", "architecture": "amd64",
                                 "containerRuntimeVersion": "containerd://1.7.0", "kernelVersion": "6.1.0", "osImage": "sim",
                                 "kubeProxyVersion": self.kubelet_version, "machineID": "", "systemUUID": "", "bootID": ""},
                },
            )

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, key: tuple[str, str, str, str], delay: float, fn: Callable[[], None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def run() -> None:
            self._timers.pop(key, None)
            try:
                fn()
            except errors.ApiError:
                pass  # the object changed or vanished meanwhile; the next change reschedules

        self._timers[key] = loop.call_later(max(delay, 0.0), run)

    def close(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

    def pending(self) -> int:
        return len(self._timers)

    def _on_change(self, ch: Change) -> None:
        if ch.resource in (("", "services"), ("", "pods")) and self.endpoints_enabled:
            # coalesced: one recomputation per namespace per loop iteration
            self._schedule(("endpoints", ch.namespace, "", ""), 0.0, lambda: self.sync_endpoints(ch.namespace))
        if ch.type == "DELETED":
            return
        if ch.resource == ("", "services"):
            self._on_service(ch)
        elif ch.resource in _WORKLOADS:
            self._on_workload(ch)

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

    # ------------------------------------------------------------------ endpoints

    def sync_endpoints(self, namespace: str) -> None:
        """Write the Endpoints of every selector Service in ``namespace`` from its ready Pods."""
        if not self.endpoints_enabled:
            return
        pods = self.store.list_raw(("", "pods"), namespace)[0]
        for svc in self.store.list_raw(("", "services"), namespace)[0]:
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector:
                continue  # Endpoints of selector-less Services belong to their users
            name = svc["metadata"]["name"]
            ready = [
                p for p in pods
                if all(((p["metadata"].get("labels") or {}).get(k) == v) for k, v in selector.items())
                and (p.get("status") or {}).get("podIP")
                and not p["metadata"].get("deletionTimestamp")
                and any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])
            ]
            subsets: list[Obj] = []
            if ready:
                ports = []
                for sp in spec.get("ports") or []:
                    port = _target_port(sp, ready[0])
                    entry: Obj = {"port": port, "protocol": sp.get("protocol", "TCP")}
                    if sp.get("name"):
                        entry["name"] = sp["name"]
                    ports.append(entry)
                addresses = [
                    {"ip": p["status"]["podIP"], "nodeName": (p.get("spec") or {}).get("nodeName", ""),
                     "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": namespace,
                                   "uid": p["metadata"]["uid"]}}
                    for p in sorted(ready, key=lambda p: str(p["status"]["podIP"]))
                ]
                subsets = [{"addresses": addresses, "ports": ports}]
            desired: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                            "metadata": {"name": name, "namespace": namespace,
                                         "labels": dict(svc["metadata"].get("labels") or {})}}
            if subsets:
                desired["subsets"] = subsets
            cur = self.store.get("v1", "Endpoints", name, namespace)
            if cur is None:
                self.store.create(desired)
            elif cur.get("subsets") != desired.get("subsets") or cur["metadata"].get("labels") != desired["metadata"]["labels"]:
                cur["metadata"]["labels"] = desired["metadata"]["labels"]
                cur.pop("subsets", None)
                if subsets:
                    cur["subsets"] = subsets
                self.store.update(cur, check_version=False)

    # ------------------------------------------------------------------ kubelet-lite

    def hold_ready(self, namespace: str, name: str) -> None:
        """Leave this workload's status as it is (unready once its spec changes) until
        :meth:`release_ready`."""
        self._held.add((namespace, name))

    def release_ready(self, namespace: str, name: str) -> None:
        self._held.discard((namespace, name))
        for res in _WORKLOADS:
            if self.store.raw(res, namespace, name) is not None:
                self._schedule((res[1], namespace, name, ""), self.ready_delay,
                               self._ready_later(res, namespace, name))

    def _ready_later(self, resource: tuple[str, str], namespace: str, name: str) -> Callable[[], None]:
        return lambda: self._make_ready(resource, namespace, name)

    def _on_workload(self, ch: Change) -> None:
        if not self.kubelet_enabled or (ch.namespace, ch.name) in self._held:
            return
        o = ch.obj
        gen = (o.get("metadata") or {}).get("generation", 1)
        status = o.get("status") or {}
        want = self._desired(ch.resource, o)
        if status.get("observedGeneration") == gen and self._ready_count(ch.resource, status) == want:
            return
        res = ch.resource
        self._schedule((res[1], ch.namespace, ch.name, ""), self.ready_delay, lambda: self._make_ready(res, ch.namespace, ch.name))

    @staticmethod
    def _ready_count(resource: tuple[str, str], status: Obj) -> Any:
        if resource[1] == "daemonsets":
            return status.get("numberReady")
        return status.get("readyReplicas")

    def _desired(self, resource: tuple[str, str], o: Obj) -> int:
        if resource[1] == "daemonsets":
            return len(self.store.list_raw(("", "nodes"), None)[0])
        r = (o.get("spec") or {}).get("replicas")
        return 1 if r is None else int(r)

    def _make_ready(self, resource: tuple[str, str], namespace: str, name: str) -> None:
        kind = self.store.registry.any_version(*resource)
        if kind is None or not self.kubelet_enabled or (namespace, name) in self._held:
            return
        cur = self.store.raw(resource, namespace, name)
        if cur is None or cur["metadata"].get("deletionTimestamp"):
            return
        n = self._desired(resource, cur)
        gen = cur["metadata"].get("generation", 1)
        now = rfc3339(self.store.clock())
        if resource[1] == "daemonsets":
            status: Obj = {
                "observedGeneration": gen,
                "currentNumberScheduled": n,
                "desiredNumberScheduled": n,
                "numberAvailable": n,
                "numberMisscheduled": 0,
                "numberReady": n,
                "updatedNumberScheduled": n,
            }
        else:
            status = {
                "observedGeneration": gen,
                "replicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
                "updatedReplicas": n,
            }
            if resource[1] == "deployments":
                status["conditions"] = [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": f'ReplicaSet "{name}" has successfully progressed.', "lastUpdateTime": now, "lastTransitionTime": now},
                ]
            else:
                status["currentReplicas"] = n
                status["availableReplicas"] = n
        self.store.update({**cur, "status": status}, kind=kind, subresource="status", check_version=False)
        if self._wants_pods(namespace, name, cur):
            self._sync_pods(kind.kind, cur, n)

    # ------------------------------------------------------------------ pods

    def run_pods(self, namespace: str, name: str) -> None:
        """Give this workload Pods with IPs (now if it exists, else when it appears)."""
        self._pod_workloads.add((namespace, name))
        for res in _WORKLOADS:
            if self.store.raw(res, namespace, name) is not None:
                self._make_ready(res, namespace, name)

    def run_pods_matching(self, predicate: Callable[[Obj], bool]) -> None:
        """Give every workload for which ``predicate(obj)`` holds Pods with IPs."""
        self._pod_predicate = predicate

    def _wants_pods(self, namespace: str, name: str, obj: Obj) -> bool:
        if (namespace, name) in self._pod_workloads:
            return True
        return self._pod_predicate is not None and self._pod_predicate(obj)

    def _new_pod_ip(self) -> str:
        ip = str(ipaddress.IPv4Address(f"10.{self.index + 100}.0.0") + self._next_pod_ip)
        self._next_pod_ip += 1
        return ip

    def _sync_pods(self, kind_name: str, workload: Obj, replicas: int) -> None:
        meta = workload["metadata"]
        ns, wname, uid = meta["namespace"], meta["name"], meta["uid"]
        template = (workload.get("spec") or {}).get("template") or {}
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pods = [
            p for p in self.store.list_raw(("", "pods"), ns)[0]
            if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
        ]
        nodes = [n["metadata"]["name"] for n in self.store.list_raw(("", "nodes"), None)[0]] or ["node-0"]
        for i in range(len(pods), replicas):
            pname = f"{wname}-{hashlib.sha256(f'{uid}/{i}'.encode()).hexdigest()[:5]}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pname,
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [
                        {"apiVersion": workload["apiVersion"], "kind": kind_name, "name": wname, "uid": uid,
                         "controller": True, "blockOwnerDeletion": True}
                    ],
                },
                "spec": {**deep_copy(template.get("spec") or {"containers": []}), "nodeName": nodes[i % len(nodes)]},
            }
            self.store.create(pod)
            self._pod_running(ns, pname)
        for p in pods[replicas:]:
            self.store.remove("v1", "Pod", p["metadata"]["name"], ns)

    def _pod_running(self, namespace: str, name: str) -> Obj:
        cur = self.store.get("v1", "Pod", name, namespace)
        if cur is None:
            raise errors.not_found("pods", name)
        now = rfc3339(self.store.clock())
        containers = (cur.get("spec") or {}).get("containers") or []
        node = (cur.get("spec") or {}).get("nodeName", "node-0")
        node_obj = self.store.get("v1", "Node", node) or {}
        host_ip = next((a["address"] for a in (node_obj.get("status") or {}).get("addresses", []) if a["type"] == "InternalIP"), "10.0.0.1")
        ip = self._new_pod_ip()
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": host_ip,
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {"name": c.get("name", f"c{i}"), "ready": True, "started": True, "restartCount": 0,
                 "image": c.get("image", ""), "imageID": "", "state": {"running": {"startedAt": now}}}
                for i, c in enumerate(containers)
            ],
        }
        return self.store.apply_status("v1", "Pod", name, namespace, status)

    def restart_pod(self, namespace: str, name: str) -> str:
        """Reschedule a Pod: it keeps its name and gets a new IP (returned)."""
        out = self._pod_running(namespace, name)
        return str(out["status"]["podIP"])

    def selector_matches(self, selector: str) -> Callable[[Obj], bool]:
        """A workload predicate from a label selector (for ``run_pods_matching``)."""
        match = parse_label_selector(selector)
        return lambda o: match((o.get("metadata") or {}).get("labels") or {})


def _target_port(service_port: Obj, pod: Obj) -> int:
    """A Service port's target on a Pod: a number, or a named container port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p.get("containerPort", 0))
    return int(service_port.get("port", 0))
