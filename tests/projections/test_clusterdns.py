"""Cluster DNS for multi-mesh: the source operator's ``global:53`` block and kube-dns stub
domain (``pkg/resources/istiocoredns/{coredns,kubedns}.go``, release-1.2), edited so that
the user's own Corefile survives byte for byte."""

from __future__ import annotations

import json

import pytest

from events import types as ev
from federationd import analyze as a
from federationd.projections.clusterdns import (
    FORWARD,
    PROXY,
    DnsEditError,
    corefile_with_global,
    desired_edits,
    forward_plugin,
    global_block,
    stub_domains_with_global,
)
from federationd.projections.derive import derive
from federationd.sim.workloads import kubeadm_corefile

from .helpers import MASTER, SEED_000, Log, istio

IP = "10.96.0.20"
#: kubeadm's Corefile of the operator's time (1.13: `proxy`), which its block was written for
KUBEADM_COREFILE = kubeadm_corefile(13)
#: The operator's block: caddyfile.EncodedServerBlock{Keys: ["global:53"], Body: [[errors],
#: [cache 30], [proxy . IP]]} through caddyfile.FromJSON, tabs replaced by two spaces.
OPERATOR_BLOCK = "global:53 {\n  errors\n  cache 30\n  proxy . 10.96.0.20\n}"


def test_the_block_is_the_operators() -> None:
    assert global_block(IP) == OPERATOR_BLOCK


def test_the_block_forwards_with_the_plugin_the_corefile_uses() -> None:
    """CoreDNS 1.5 removed ``proxy`` (kubeadm installs CoreDNS 1.6 from Kubernetes 1.16):
    a Corefile naming it is refused whole. The operator's ``proxy`` where the cluster's
    Corefile uses ``proxy`` (kubeadm up to 1.13), ``forward`` where it uses ``forward``."""
    old, new = kubeadm_corefile(13), kubeadm_corefile(16)
    assert "proxy . /etc/resolv.conf" in old and "forward . /etc/resolv.conf" in new and "ready" in new
    assert corefile_with_global(old, IP) == old + "\n" + OPERATOR_BLOCK + "\n"
    assert corefile_with_global(new, IP) == new + "\n" + OPERATOR_BLOCK.replace("proxy", "forward") + "\n"
    assert forward_plugin(corefile_with_global(old, IP)) == PROXY
    assert forward_plugin(".:53 {\n  errors\n}\n") == PROXY  # nothing to go by: the operator's
    # a proxy block on a Corefile that forwards otherwise becomes forward; either is removed
    fixed = corefile_with_global(new + "\n" + OPERATOR_BLOCK + "\n", IP)
    assert fixed == new + "\n" + global_block(IP, FORWARD) + "\n"
    assert corefile_with_global(fixed, "") == new


def test_appended_after_the_users_corefile_kept_byte_for_byte() -> None:
    out = corefile_with_global(KUBEADM_COREFILE, IP)
    assert out == KUBEADM_COREFILE + "\n" + OPERATOR_BLOCK + "\n"
    assert corefile_with_global(out, IP) == out  # idempotent
    assert corefile_with_global(out, "") == KUBEADM_COREFILE  # removes exactly its block


def test_a_changed_address_replaces_the_block_in_place() -> None:
    user = KUBEADM_COREFILE + "\n" + global_block("10.0.0.9") + "\n\nacme.local:53 {\n  forward . 1.1.1.1  # mine\n}\n"
    out = corefile_with_global(user, IP)
    assert out == KUBEADM_COREFILE + "\n" + OPERATOR_BLOCK + "\n\nacme.local:53 {\n  forward . 1.1.1.1  # mine\n}\n"
    assert corefile_with_global(out, "") == KUBEADM_COREFILE + "\nacme.local:53 {\n  forward . 1.1.1.1  # mine\n}\n"


def test_a_global_block_the_user_wrote_otherwise_is_not_removed() -> None:
    user = KUBEADM_COREFILE + "\nglobal:53 {\n    forward . 10.1.1.1\n}\n"
    assert corefile_with_global(user, "") == user


def test_braces_in_comments_do_not_count_and_unbalanced_is_refused() -> None:
    user = "# not a block { global:53 {\n.:53 {\n  errors\n}\n"
    assert corefile_with_global(user, IP).endswith(OPERATOR_BLOCK + "\n")
    with pytest.raises(DnsEditError):
        corefile_with_global(".:53 {\n errors\n", IP)


def test_stub_domains_as_the_operator_marshals_them() -> None:
    assert stub_domains_with_global("", IP) == '{"global":["10.96.0.20"]}'
    out = stub_domains_with_global('{"acme.local": ["1.2.3.4"]}', IP)
    assert json.loads(out) == {"acme.local": ["1.2.3.4"], "global": [IP]}
    assert stub_domains_with_global(out, IP) == out
    assert json.loads(stub_domains_with_global(out, "")) == {"acme.local": ["1.2.3.4"]}
    with pytest.raises(DnsEditError):
        stub_domains_with_global("not json", IP)


def test_desired_edits_only_for_configmaps_that_exist_and_differ() -> None:
    observed = {"coredns": (KUBEADM_COREFILE, True, 7)}
    (edit,) = desired_edits(observed, cluster_ip=IP, wanted=True, reasons=(3,))
    assert (edit.name, edit.data_key, edit.cluster_ip, edit.reasons) == ("coredns", "Corefile", IP, (3, 7))
    assert edit.text.endswith(OPERATOR_BLOCK + "\n")
    # in place: nothing to do; no address yet: nothing either; disabled and absent: nothing
    assert desired_edits({"coredns": (edit.text, True, 8)}, cluster_ip=IP, wanted=True) == ()
    assert desired_edits(observed, cluster_ip="", wanted=True) == ()
    assert desired_edits(observed, cluster_ip=IP, wanted=False) == ()
    (off,) = desired_edits({"coredns": (edit.text, True, 8)}, cluster_ip="", wanted=False)
    assert off.text == KUBEADM_COREFILE and off.cluster_ip == ""


# --- derived from the log ------------------------------------------------------------------------


def _facts(corefile: str, ip: str = IP) -> list[ev.Event]:
    return [
        ev.ClusterDnsObserved(cluster=MASTER, key="ConfigMap/kube-system/coredns", time=1.0, namespace="kube-system",
                              name="coredns", data_key="Corefile", text=corefile),
        ev.ServiceAddressObserved(cluster=MASTER, key="Service/istio-system/istiocoredns", time=1.0,
                                  namespace="istio-system", name="istiocoredns", cluster_ip=ip),
    ]


def test_derive_edits_the_masters_corefile_while_istiocoredns_is_on_and_view_shows_it() -> None:
    log = Log()
    log.add(ev.MasterConfigured(cluster=MASTER, key="Cluster//master", time=1.0, identity="d"))
    log.add(*_facts(KUBEADM_COREFILE))
    seq = log.add(istio({**SEED_000, "multiMesh": True, "istioCoreDNS": {"enabled": True}}))
    (edit,) = derive(log.state).dns["master"]
    assert edit.key == "v1/ConfigMap/kube-system/coredns" and edit.text.endswith(OPERATOR_BLOCK + "\n")
    assert seq in edit.reasons
    # analyze on the log sees the Corefile as it will be, and istiocoredns' address
    view = a.view_from_state(log.state)
    assert [f for f in a.analyze(view) if f.check == "multimesh-cluster-dns"] == []
    # once the Corefile carries it (the watch reports the write), nothing is left to do
    log.add(_facts(edit.text)[0])
    assert derive(log.state).dns == {}


def test_derive_removes_the_block_when_istiocoredns_goes_or_the_istio_resource_does() -> None:
    with_block = corefile_with_global(KUBEADM_COREFILE, IP)
    for last in (
        istio({**SEED_000, "istioCoreDNS": {"enabled": False}}, generation=2),
        ev.IstioRemoved(cluster=MASTER, key="Istio/istio-system/istio", time=2.0, namespace="istio-system", name="istio"),
    ):
        log = Log()
        log.add(ev.MasterConfigured(cluster=MASTER, key="Cluster//master", time=1.0, identity="d"))
        log.add(*_facts(with_block))
        log.add(istio({**SEED_000, "istioCoreDNS": {"enabled": True}}))
        assert derive(log.state).dns == {}  # in place already
        log.add(last)
        (edit,) = derive(log.state).dns["master"]
        assert edit.cluster_ip == "" and edit.text == KUBEADM_COREFILE, type(last).__name__


def test_a_corefile_without_the_block_and_istiocoredns_off_is_left_alone() -> None:
    log = Log()
    log.add(ev.MasterConfigured(cluster=MASTER, key="Cluster//master", time=1.0, identity="d"))
    log.add(*_facts(KUBEADM_COREFILE + "\nglobal:53 {\n    forward . 10.1.1.1\n}\n"))
    log.add(istio(SEED_000))
    assert derive(log.state).dns == {}
