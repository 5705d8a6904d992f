"""Multi-mesh cluster DNS end to end: with ``istioCoreDNS`` on, the daemon forwards
``global`` from the cluster's CoreDNS to istiocoredns as the source operator does
(``pkg/resources/istiocoredns/coredns.go``, release-1.2: the ``global:53 { errors;
cache 30; proxy . <istiocoredns ClusterIP> }`` server block appended to the Corefile of
``kube-system/coredns``), keeps the user's Corefile around it, puts it back if a user
removes it, and removes exactly that block when istiocoredns is switched off; the same
for ``global`` in ``kube-system/kube-dns`` ``stubDomains`` (``kubedns.go``) on a cluster
that has that ConfigMap.

The emulator's master is a kubeadm cluster: ``kube-system/coredns`` holds kubeadm's
Corefile and there is no kube-dns ConfigMap (CoreDNS is kubeadm's default since 1.13),
so none is created.
"""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from federationd import analyze as a
from federationd.projections.clusterdns import FORWARD, PROXY, global_block
from tests.daemon.conftest import kubectl
from tests.daemon.test_e2e import SEED_000
from tests.daemon.waiting import wait_for

from .conftest import Mesh
from .support import NAMESPACE, Obj, apply, settled, with_spec

pytestmark = pytest.mark.asyncio(loop_scope="module")

BASE: Obj = yaml.safe_load(SEED_000)
NAME = BASE["metadata"]["name"]
MULTI_MESH = with_spec(BASE, multiMesh=True, istioCoreDNS={"enabled": True})


def _user_corefile(kubeadm: str) -> str:
    """A user's own edits: a comment in kubeadm's block and a stub zone of their own."""
    return kubeadm.replace("    errors\n", "    errors  # ours, keep\n", 1) + (
        "\nacme.internal:53 {\n    errors\n    forward . 10.20.30.40\n}\n"
    )


def _corefile(mesh: Mesh) -> str:
    cm = mesh.master.store.get("v1", "ConfigMap", "coredns", "kube-system")
    assert cm is not None, "kube-system/coredns is never deleted"
    return str(cm["data"]["Corefile"])


def _istiocoredns_ip(mesh: Mesh) -> str:
    svc = mesh.master.store.get("v1", "Service", "istiocoredns", NAMESPACE)
    return str(((svc or {}).get("spec") or {}).get("clusterIP") or "")


def _stub_domains(mesh: Mesh) -> object:
    cm = mesh.master.store.get("v1", "ConfigMap", "kube-dns", "kube-system")
    return json.loads(cm["data"]["stubDomains"]) if cm else None


async def _set_corefile(mesh: Mesh, text: str) -> None:
    await kubectl(mesh.kubeconfig, "-n", "kube-system", "patch", "configmap", "coredns", "--type", "merge",
                  "-p", json.dumps({"data": {"Corefile": text}}))


async def _dns_findings(mesh: Mesh) -> list[a.Finding]:
    args = argparse.Namespace(kubeconfig=str(mesh.kubeconfig), context=None, namespace=NAMESPACE, cluster_name="master")
    view = await a._from_live(args)
    return [f for f in a.analyze(view) if f.check == "multimesh-cluster-dns"]


async def test_global_forwarded_to_istiocoredns_user_edits_kept_and_removed_when_off(mesh: Mesh) -> None:
    kubeadm = _corefile(mesh)
    # the block forwards with the plugin the cluster's own Corefile uses (kubeadm: `proxy`
    # up to 1.13, `forward` from 1.14; CoreDNS has no `proxy` from Kubernetes 1.16 on)
    plugin = PROXY if "    proxy . /etc/resolv.conf\n" in kubeadm else FORWARD
    assert mesh.master.store.get("v1", "ConfigMap", "kube-dns", "kube-system") is None
    before = await _dns_findings(mesh)  # nothing multi-mesh yet: nothing to check
    assert before == [], a.table(before)

    gen = await apply(mesh, MULTI_MESH)
    await settled(mesh, NAME, gen)
    await wait_for(lambda: _istiocoredns_ip(mesh) != "", timeout=30, what="istiocoredns has a ClusterIP")
    ip = _istiocoredns_ip(mesh)
    want = kubeadm + "\n" + global_block(ip, plugin) + "\n"
    await wait_for(lambda: _corefile(mesh) == want, timeout=30, what="global:53 appended to the Corefile")
    assert f"global:53 {{\n  errors\n  cache 30\n  {plugin} . {ip}\n}}" in _corefile(mesh)
    found = await _dns_findings(mesh)
    assert found == [], a.table(found)
    # and on the event log: the observed Corefile, the derived edit, the observed ClusterIP
    logged = [f for f in a.analyze(await a._from_log(str(mesh.log), None)) if f.check.startswith("multimesh")]
    assert logged == [], a.table(logged)
    # never created where the cluster has none; where there is one (a cluster running
    # kube-dns, like GKE's), `global` joins the user's stub domains
    assert mesh.master.store.get("v1", "ConfigMap", "kube-dns", "kube-system") is None
    await kubectl(mesh.kubeconfig, "-n", "kube-system", "create", "configmap", "kube-dns",
                  "--from-literal", 'stubDomains={"acme.internal": ["10.20.30.40"]}')
    await wait_for(lambda: _stub_domains(mesh) == {"acme.internal": ["10.20.30.40"], "global": [ip]}, timeout=30,
                   what="global in kube-dns stubDomains")

    # a user rewrites the Corefile and drops the block: it comes back, their text stays
    await _set_corefile(mesh, _user_corefile(kubeadm))
    want = _user_corefile(kubeadm) + "\n" + global_block(ip, plugin) + "\n"
    await wait_for(lambda: _corefile(mesh) == want, timeout=30, what="global:53 put back after the user's edit")
    # a user's edit with the block in place is theirs: nothing rewrites it
    user = _user_corefile(kubeadm).replace("acme.internal:53 {\n    errors\n", "acme.internal:53 {\n    errors\n    cache 10\n", 1)
    mine = user + "\n" + global_block(ip, plugin) + "\n"
    await _set_corefile(mesh, mine)
    gen = await apply(mesh, with_spec(MULTI_MESH, pilot={"resources": {"requests": {"cpu": "12m"}}}))
    await settled(mesh, NAME, gen)
    assert _corefile(mesh) == mine

    # istioCoreDNS off: exactly the block goes, the user's Corefile is left as they wrote it
    gen = await apply(mesh, with_spec(MULTI_MESH, istioCoreDNS={"enabled": False}))
    await settled(mesh, NAME, gen)
    await wait_for(lambda: _corefile(mesh) == user, timeout=30, what="global:53 removed from the Corefile")
    await wait_for(lambda: _stub_domains(mesh) == {"acme.internal": ["10.20.30.40"]}, timeout=30,
                   what="global removed from stubDomains")
