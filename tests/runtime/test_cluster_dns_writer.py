"""The cluster DNS writer (``actuators.clusterdns``) and its fact sources: the edit is
made on the text just read, with that read's resourceVersion, so a user's concurrent
edit is kept; nothing is created, nothing rewritten when in place."""

from __future__ import annotations

import copy
from typing import Any, cast

from events import types as ev
from events.types import ClusterName
from federationd.actuators.client import ApiConflict, ApiNotFound, KubeClient
from federationd.actuators.clusterdns import ClusterDnsActuator
from federationd.projections.clusterdns import DnsEdit, global_block
from federationd.sim.workloads import kubeadm_corefile
from federationd.watchers import facts

IP = "10.96.0.20"
COREFILE = kubeadm_corefile(13)


class FakeKube:
    """One ConfigMap; ``race`` is a user's edit that lands between our read and our write."""

    def __init__(self, corefile: str | None, race: str | None = None) -> None:
        self.cm: dict[str, Any] | None = None if corefile is None else {
            "metadata": {"name": "coredns", "namespace": "kube-system", "resourceVersion": "1"},
            "data": {"Corefile": corefile},
        }
        self.race = race
        self.patches: list[dict[str, Any]] = []

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        if self.cm is None:
            raise ApiNotFound("not found", status=404)
        return copy.deepcopy(self.cm)

    async def patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                    patch: dict[str, Any]) -> dict[str, Any]:
        assert self.cm is not None
        self.patches.append(patch)
        if self.race is not None:
            self.cm["data"]["Corefile"], self.race = self.race, None
            self.cm["metadata"]["resourceVersion"] = str(int(self.cm["metadata"]["resourceVersion"]) + 1)
        if patch["metadata"]["resourceVersion"] != self.cm["metadata"]["resourceVersion"]:
            raise ApiConflict("the object has been modified", status=409)
        self.cm["data"].update(patch["data"])
        self.cm["metadata"]["resourceVersion"] = str(int(self.cm["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.cm)


def _edit(ip: str = IP) -> DnsEdit:
    return DnsEdit(namespace="kube-system", name="coredns", data_key="Corefile", cluster_ip=ip, text="")


def _writer(kube: FakeKube) -> ClusterDnsActuator:
    w = ClusterDnsActuator(kube=lambda c: cast(KubeClient, kube) if c == "master" else None)
    w.set_edits({"master": (_edit(),)})
    return w


async def test_a_users_edit_between_read_and_write_is_kept() -> None:
    user = COREFILE + "\nacme.internal:53 {\n    forward . 10.2.3.4\n}\n"
    kube = FakeKube(COREFILE, race=user)
    w = _writer(kube)
    assert await w.reconcile_once() is False  # 409: retried, not forced
    assert await w.reconcile_once() is True
    assert kube.cm is not None and kube.cm["data"]["Corefile"] == user + "\n" + global_block(IP) + "\n"
    # in place: a resync reads and writes nothing
    n = len(kube.patches)
    assert await w.reconcile_once() is True and len(kube.patches) == n


async def test_an_absent_configmap_is_not_created() -> None:
    kube = FakeKube(None)
    assert await _writer(kube).reconcile_once() is True
    assert kube.cm is None and kube.patches == []


def test_facts_only_from_the_named_configmaps_and_the_service_address() -> None:
    src = facts.cluster_dns("coredns")
    assert (src.namespace, src.field_selector) == ("kube-system", "metadata.name=coredns")
    cm = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": COREFILE}}
    (f,) = facts.cluster_dns_fact(ClusterName("m"), cm, 1.0)
    assert isinstance(f, ev.ClusterDnsObserved) and (f.data_key, f.text, f.present) == ("Corefile", COREFILE, True)
    other = {"metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"}, "data": {}}
    assert facts.cluster_dns_fact(ClusterName("m"), other, 1.0) == []
    svc = {"metadata": {"name": "istiocoredns", "namespace": "istio-system"}, "spec": {"clusterIP": IP}}
    (s,) = facts.service_address_fact(ClusterName("m"), svc, 1.0)
    assert isinstance(s, ev.ServiceAddressObserved) and s.cluster_ip == IP


def test_a_restart_does_not_take_one_named_sources_object_for_gone_from_another() -> None:
    """``coredns`` and ``kube-dns`` are two sources of one fact family, each watching one
    name: after a restart, kube-dns's (empty) first list says nothing about coredns."""
    remembered = [ev.ClusterDnsObserved(cluster=ClusterName("m"), key="ConfigMap/kube-system/coredns", time=0.0,
                                        namespace="kube-system", name="coredns", data_key="Corefile", text=COREFILE)]
    assert facts.disappeared(facts.cluster_dns("kube-dns"), ClusterName("m"), remembered, [], 1.0) == []
    (gone,) = facts.disappeared(facts.cluster_dns("coredns"), ClusterName("m"), remembered, [], 1.0)
    assert isinstance(gone, ev.ClusterDnsRemoved) and gone.name == "coredns"
