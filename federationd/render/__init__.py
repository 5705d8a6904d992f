"""Render: a decoded spec plus facts in, the Kubernetes objects of one cluster out.

``render_master`` gives the master's whole control plane; ``render_remote`` gives what a
remote cluster runs (citadel, sidecar injector, gateways, and CNI / node agent when
enabled) at the master's version and images, with the RemoteIstio's own overrides and
the remote's network name from the facts.

The version family of ``spec.version`` picks the profile (``render.profiles``); a
version no profile covers raises :class:`UnsupportedVersion` before anything is built,
so callers change nothing. Output is sorted (CRDs and namespaces first, custom
resources last) and pure: the same spec and facts give byte-identical objects.
"""

from __future__ import annotations

from msgspec.structs import replace

from federationd.api.v1beta1 import IstioSpec, RemoteIstioSpec, version_family
from federationd.render import mesh
from federationd.render.components.context import Ctx, Profile
from federationd.render.objects import Obj, RenderFacts, sorted_objects
from federationd.render.profiles import PROFILES

__all__ = [
    "SUPPORTED_VERSIONS",
    "UNSUPPORTED_MESSAGE",
    "RenderError",
    "UnsupportedVersion",
    "profile_for",
    "remote_effective_spec",
    "render_master",
    "render_remote",
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


def _build(ctx: Ctx) -> list[Obj]:
    out: list[Obj] = []
    comps = ctx.profile.remote if ctx.facts.role == "remote" else ctx.profile.master
    for comp in comps:
        if comp.enabled(ctx.spec):
            out += comp.build(ctx)
    out += mesh.render(ctx.spec, namespace=ctx.namespace, facts=ctx.facts)
    return sorted_objects(out)


def render_master(spec: IstioSpec, *, namespace: str, facts: RenderFacts) -> list[Obj]:
    """Every object of the master's control plane for a defaulted ``spec``."""
    profile = profile_for(spec.version)
    if facts.role != "master":
        facts = replace(facts, role="master")
    return _build(Ctx(spec=spec, profile=profile, namespace=namespace, facts=facts))


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
    spec: IstioSpec, remote: RemoteIstioSpec, *, namespace: str, facts: RenderFacts
) -> list[Obj]:
    """Every object a remote cluster runs, for the master's defaulted ``spec`` and a
    defaulted RemoteIstio ``remote``."""
    profile = profile_for(spec.version)
    if facts.role != "remote":
        facts = replace(facts, role="remote")
    effective = remote_effective_spec(spec, remote)
    return _build(Ctx(spec=effective, profile=profile, namespace=namespace, facts=facts))
