"""Render: a decoded spec plus facts in, the Kubernetes objects of one cluster out.

``render_master`` gives the master's whole control plane; ``render_remote`` gives what a
remote cluster runs (citadel, sidecar injector, gateways, and CNI / node agent when
enabled) at the master's version and images, with the RemoteIstio's own overrides and
the remote's network name from the facts.

The version family of ``spec.version`` picks the profile (``render.profiles``); a
version no profile covers raises :class:`UnsupportedVersion` before anything is built,
so callers change nothing. Output is sorted (CRDs and namespaces first, custom
resources last) and pure: the same spec and facts give byte-identical objects.

Both entry points take an optional ``cache`` (``render.cache.RenderCache``): with it, a
component whose inputs did not change returns the objects it built before instead of
being built again (what makes a change cost what it changes at fleet scale).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from msgspec.structs import replace

from federationd.api.v1beta1 import IstioSpec, RemoteIstioSpec, version_family
from federationd.render import mesh
from federationd.render.cache import RenderCache
from federationd.render.components.context import Ctx, Profile
from federationd.render.objects import Obj, RenderFacts, sorted_objects
from federationd.render.profiles import PROFILES

__all__ = [
    "SUPPORTED_VERSIONS",
    "UNSUPPORTED_MESSAGE",
    "RenderCache",
    "RenderError",
    "UnsupportedVersion",
    "profile_for",
    "remote_effective_spec",
    "render_master",
    "render_master_mesh_config",
    "render_remote",
    "render_remote_mesh_config",
]

UNSUPPORTED_MESSAGE = "intended Istio version is unsupported by this version of the operator"

#: Human description of what this build renders (for README, status and ``--help``).
SUPPORTED_VERSIONS = ", ".join(f"{family}.x" for family in sorted(PROFILES))


class RenderError(Exception):
    """Base of render's refusals."""


class UnsupportedVersion(RenderError):
    """``spec.version`` belongs to no supported family; nothing may be changed."""

    def __init__(self, version: str) -> None:
        super().__init__(UNSUPPORTED_MESSAGE)
        self.version = version


def profile_for(version: str) -> Profile:
    profile = PROFILES.get(version_family(version))
    if profile is None:
        raise UnsupportedVersion(version)
    return profile


#: The render cache's name for the ``istio`` ConfigMap component.
_MESH_CONFIG = "mesh"


def _mesh_config(ctx: Ctx) -> list[Obj]:
    return mesh.render_config(ctx.spec, namespace=ctx.namespace, facts=ctx.facts)


def _mesh_security(ctx: Ctx) -> list[Obj]:
    return mesh.render_security(ctx.spec, namespace=ctx.namespace, facts=ctx.facts)


def _cached(cache: RenderCache, name: str, build: Callable[[Ctx], list[Obj]], ctx: Ctx) -> list[Obj]:
    return cache.build(name, build, ctx, make_ctx=lambda f: dataclasses.replace(ctx, facts=f))


def _parts(ctx: Ctx) -> list[tuple[str, Callable[[Ctx], list[Obj]]]]:
    """The components built for ``ctx``, by name."""
    parts: list[tuple[str, Callable[[Ctx], list[Obj]]]] = []
    comps = ctx.profile.remote if ctx.facts.role == "remote" else ctx.profile.master
    for comp in comps:
        if comp.enabled(ctx.spec):
            parts.append((comp.name, comp.build))
    # The mesh objects in two parts: only the ConfigMap depends on the gateways.
    parts += [(_MESH_CONFIG, _mesh_config), ("mesh-security", _mesh_security)]
    return parts


def _build(ctx: Ctx, cache: RenderCache | None = None) -> list[Obj]:
    out: list[Obj] = []
    for name, build in _parts(ctx):
        if cache is None:
            out += build(ctx)
        else:
            out += _cached(cache, name, build, ctx)
    return sorted_objects(out)


def render_master(
    spec: IstioSpec, *, namespace: str, facts: RenderFacts, cache: RenderCache | None = None
) -> list[Obj]:
    """Every object of the master's control plane for a defaulted ``spec``."""
    profile = profile_for(spec.version)
    if facts.role != "master":
        facts = replace(facts, role="master")
    return _build(Ctx(spec=spec, profile=profile, namespace=namespace, facts=facts), cache)


def render_master_mesh_config(
    spec: IstioSpec, *, namespace: str, facts: RenderFacts, cache: RenderCache
) -> list[Obj] | None:
    """The ``istio`` ConfigMap of ``render_master`` alone, through the same cache entry,
    when every other component of the master would be a cache hit with these facts (a
    moved gateway: only ``meshNetworks`` changed); None when another component would be
    built again (a new network's registry rebuilds pilot), so the caller renders all.
    The object is ``mesh.render_config``'s, as in ``render_master`` (upstream: the
    operator's ``pkg/resources/common/configmap.go`` and the charts'
    ``templates/configmap.yaml``, compared in ``render/mesh.py``)."""
    profile = profile_for(spec.version)
    if facts.role != "master":
        facts = replace(facts, role="master")
    ctx = Ctx(spec=spec, profile=profile, namespace=namespace, facts=facts)
    if not cache.hits(ctx, [name for name, _ in _parts(ctx) if name != _MESH_CONFIG]):
        return None
    return _cached(cache, _MESH_CONFIG, _mesh_config, ctx)


def remote_effective_spec(spec: IstioSpec, remote: RemoteIstioSpec) -> IstioSpec:
    """The master spec with the RemoteIstio's own settings folded in.

    The remote keeps the master's version and images (an empty image in the RemoteIstio
    means "the master's"), and takes its own IP ranges, injection namespaces, default
    resources, citadel, sidecar injector and proxy settings.
    """
    si, rsi = spec.sidecar_injector, remote.sidecar_injector
    rcni = rsi.init_cni_configuration
    return replace(
        spec,
        include_ip_ranges=remote.include_ip_ranges,
        exclude_ip_ranges=remote.exclude_ip_ranges,
        auto_injection_namespaces=list(remote.auto_injection_namespaces),
        default_resources=remote.default_resources,
        citadel=replace(remote.citadel, image=remote.citadel.image or spec.citadel.image),
        sidecar_injector=replace(
            rsi,
            image=rsi.image or si.image,
            init_cni_configuration=replace(
                rcni, image=rcni.image or si.init_cni_configuration.image
            ),
        ),
        proxy=replace(remote.proxy, image=remote.proxy.image or spec.proxy.image),
        proxy_init=replace(
            remote.proxy_init, image=remote.proxy_init.image or spec.proxy_init.image
        ),
    )


def render_remote(
    spec: IstioSpec,
    remote: RemoteIstioSpec,
    *,
    namespace: str,
    facts: RenderFacts,
    cache: RenderCache | None = None,
) -> list[Obj]:
    """Every object a remote cluster runs, for the master's defaulted ``spec`` and a
    defaulted RemoteIstio ``remote``."""
    return _build(_remote_ctx(spec, remote, namespace=namespace, facts=facts, cache=cache), cache)


def _remote_ctx(
    spec: IstioSpec, remote: RemoteIstioSpec, *, namespace: str, facts: RenderFacts, cache: RenderCache | None
) -> Ctx:
    profile = profile_for(spec.version)
    if facts.role != "remote":
        facts = replace(facts, role="remote")
    if cache is None:
        effective = remote_effective_spec(spec, remote)
    else:
        effective = cache.effective_spec(facts.cluster, spec, remote, remote_effective_spec)
    return Ctx(spec=effective, profile=profile, namespace=namespace, facts=facts)


def render_remote_mesh_config(
    spec: IstioSpec,
    remote: RemoteIstioSpec,
    *,
    namespace: str,
    facts: RenderFacts,
    cache: RenderCache,
) -> list[Obj]:
    """The ``istio`` ConfigMap of ``render_remote`` alone (the one object a new
    ``meshNetworks`` changes), through the same cache entry: what ``render_remote``
    would return for it with the same arguments."""
    ctx = _remote_ctx(spec, remote, namespace=namespace, facts=facts, cache=cache)
    return _cached(cache, _MESH_CONFIG, _mesh_config, ctx)
