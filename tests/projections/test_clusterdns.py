"""Cluster DNS for multi-mesh: the source operator's ``global:53`` block and kube-dns stub
domain (``pkg/resources/istiocoredns/{coredns,kubedns}.go``, release-1.2), edited so that
the user's own Corefile survives byte for byte."""

from __future__ import annotations

import json

import pytest

from federationd.projections.clusterdns import (
    DnsEditError,
    corefile_with_global,
    desired_edits,
    global_block,
    stub_domains_with_global,
)
from federationd.sim.workloads import KUBEADM_COREFILE

IP = "10.96.0.20"
#: The operator's block: caddyfile.EncodedServerBlock{Keys: ["global:53"], Body: [[errors],
#: [cache 30], [proxy . IP]]} through caddyfile.FromJSON, tabs replaced by two spaces.
OPERATOR_BLOCK = "global:53 {\n  errors\n  cache 30\n  proxy . 10.96.0.20\n}"


def test_the_block_is_the_operators() -> None:
    assert global_block(IP) == OPERATOR_BLOCK


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
