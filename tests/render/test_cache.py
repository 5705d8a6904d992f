"""RenderCache: a component built for one remote serves another that read the same; what
it returns is always what rendering without a cache returns."""

from __future__ import annotations

from typing import Any

from federationd.api import v1beta1
from federationd.render import render_remote
from federationd.render.cache import RenderCache
from federationd.render.objects import MeshNetwork, NetworkGateway, RenderFacts, ref

from .specs import NS, full, full_remote

NETWORKS = (
    MeshNetwork(name="master", from_registry=("Kubernetes",), gateways=(NetworkGateway(address="35.0.0.1", port=443),)),
    MeshNetwork(name="remote-a", from_registry=("remote-a",), gateways=(NetworkGateway(address="35.0.0.2", port=443),)),
)


def _facts(cluster: str, **kw: Any) -> RenderFacts:
    return RenderFacts(cluster=cluster, role="remote", network=cluster, mesh_networks=NETWORKS, **kw)


def _render(cache: RenderCache | None, spec: v1beta1.IstioSpec, rraw: dict[str, Any], facts: RenderFacts) -> list[dict[str, Any]]:
    return render_remote(spec, v1beta1.remote_istio_spec(rraw, namespace=NS), namespace=NS, facts=facts, cache=cache)


def _by_ref(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ref(o): o for o in objs}


def test_remotes_that_read_the_same_share_builds_and_get_what_an_uncached_render_gives() -> None:
    spec = v1beta1.istio_spec(full(), namespace=NS)
    cache = RenderCache()
    a = _render(cache, spec, full_remote(), _facts("remote-a", ca_secret_name="cacerts", ca_fingerprint="fa"))
    built = len(cache.rendered)
    # another remote: its own name, network and CA fingerprint, the same settings
    b = _render(cache, spec, full_remote(), _facts("remote-b", ca_secret_name="cacerts", ca_fingerprint="fb"))
    assert a == _render(None, spec, full_remote(), _facts("remote-a", ca_secret_name="cacerts", ca_fingerprint="fa"))
    assert b == _render(None, spec, full_remote(), _facts("remote-b", ca_secret_name="cacerts", ca_fingerprint="fb"))
    rebuilt = {c for _, c, _ in list(cache.rendered)[built:]}
    shared = {c for _, c in cache.shared}
    assert shared and rebuilt and not rebuilt & shared
    # what reads the cluster's network or CA is built again; the rest is the same object
    assert "mesh" in shared and "citadel" in rebuilt
    oa, ob = _by_ref(a), _by_ref(b)
    assert oa.keys() == ob.keys()
    cm, citadel = "ConfigMap/istio-system/istio", "Deployment/istio-system/istio-citadel"
    assert oa[cm] is ob[cm]
    assert oa[citadel] != ob[citadel]  # its pod-template hash carries the CA fingerprint
    same = [k for k in oa if oa[k] is ob[k]]
    assert len(same) > len(oa) // 2


def test_remotes_with_other_settings_build_their_own() -> None:
    spec = v1beta1.istio_spec(full(), namespace=NS)
    cache = RenderCache()
    _render(cache, spec, full_remote(), _facts("remote-a"))
    other = {**full_remote(), "proxy": {"privileged": True, "logLevel": "debug"}}
    b = _render(cache, spec, other, _facts("remote-b"))
    assert b == _render(None, spec, other, _facts("remote-b"))
    # the proxy settings are in the injector's template and the mesh config: those are
    # not another remote's
    shared = {c for _, c in cache.shared}
    assert "mesh" not in shared and "sidecarInjector" not in shared
    # the same settings again (an equal spec, another object): one effective spec, shared
    cache.shared.clear()
    c = _render(cache, spec, full_remote(), _facts("remote-c"))
    assert c == _render(None, spec, full_remote(), _facts("remote-c"))
    assert "mesh" in {comp for _, comp in cache.shared}
