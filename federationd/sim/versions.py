"""Kubernetes releases a simulated cluster can be: served group/versions, kinds and schemas per minor.

A fleet may mix releases (``federationd sim --kubernetes-version remote-old=1.14``),
because the meshes federationd builds do: Istio 1.1/1.2 ran on Kubernetes 1.13 to 1.15,
where ``apiextensions.k8s.io/v1`` did not exist yet, and a cluster of 1.22 or later no
longer serves the ``v1beta1`` APIs those releases used. Everything release-specific
the emulator needs is here, in one place:

* :data:`SERVED_GROUP_VERSIONS` — **the table**: which built-in group/versions an API
  server of each minor serves *by default* (alpha versions and betas that are off by
  default are not listed), with :data:`KIND_LAST_MINOR` for the kinds that left a
  group/version before the group/version itself did (``extensions/v1beta1``
  Deployments went in 1.16, its Ingress in 1.22). It is written from the upstream
  deprecation guide and checked against each release's OpenAPI definitions by the
  tests; :func:`served_group_versions` and :func:`serves` read it.
* :func:`definitions` — the upstream OpenAPI definitions (JSON-schema form) of a
  minor: from ``kubernetes-validate`` for the releases it ships (1.25 onwards), from
  ``data/k8s-schemas-old.json.xz`` (see :mod:`federationd.sim.gen_schemas`) for
  1.13 to 1.24. Validation, strategic merge patch and the OpenAPI documents of a
  cluster read the definitions of its own release.
* :func:`registry_for` — the kinds a cluster of a minor serves: each built-in kind of
  :mod:`federationd.sim.kinds` in every group/version that release serves it in (an
  ``apps/v1beta2`` Deployment is the same object as the ``apps/v1`` one, stored once
  and converted on the way in and out, as upstream). A built-in kind whose own
  version that release does not serve stays in the registry as the storage form only:
  not routed, not in discovery, still what the store and behaviours use.

* what a release's API server does differently on the wire, by the minor its feature
  went on by default: custom resource schemas in ``/openapi/v2`` (1.15), aggregated
  discovery (1.26, ``v2`` from 1.30), server-side apply
  and managedFields (1.16), ``/openapi/v3`` (1.24), the ``fieldValidation`` parameter
  (1.25; before it unknown fields are dropped silently and kubectl validates on the
  client against ``/openapi/v2``).

The daemon never reads this module (it learns what a cluster serves through
discovery, as against a real cluster); renderers that must choose API versions per
cluster can rely on :func:`served_group_versions`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import lzma
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from federationd.sim.kinds import BUILTINS, Kind, Registry

#: The release a cluster is unless told otherwise: the kubectl on the machine image.
DEFAULT_VERSION: Final = "1.32"
#: The release a simulated *fleet* cluster is unless told otherwise (``Fleet``,
#: ``federationd sim``, ``make demo``): one the meshes federationd installs can run on.
#: Istio 1.1/1.2 need ``admissionregistration.k8s.io/v1beta1`` (gone in 1.22) and
#: federationd writes with server-side apply (on by default from 1.16), so 1.16 to 1.21;
#: 1.16 is the closest to the releases Istio 1.2 was tested on (1.12 to 1.14).
FLEET_DEFAULT_VERSION: Final = "1.16"
#: The oldest release served (the oldest Istio 1.1 ran on).
OLDEST_MINOR: Final = 13
#: The newest release whose definitions ship in ``data/`` rather than kubernetes-validate.
_LAST_SHIPPED_MINOR: Final = 24


class VersionError(ValueError):
    """A Kubernetes version the emulator cannot serve, or a malformed one."""


@dataclass(frozen=True, slots=True, order=True)
class KubeVersion:
    """A Kubernetes release, ``1.<minor>.<patch>``."""

    minor: int
    patch: int = 0
    #: ``1.14``: the key of everything per release in this module (read on every
    #: request, so computed once)
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", f"1.{self.minor}")

    @property
    def git_version(self) -> str:
        """``v1.14.0``: what ``/version`` says."""
        return f"v1.{self.minor}.{self.patch}"


_VERSION = re.compile(r"^v?1\.(\d+)(?:\.(\d+))?$")


@functools.cache
def newest_minor() -> int:
    """The newest minor the installed kubernetes-validate ships definitions for."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    found = [
        int(m.group(1))
        for entry in root.iterdir()
        if (m := re.match(r"^v1\.(\d+)\.0-local-strict$", entry.name))
    ]
    return max(found)


def supported() -> list[str]:
    """Every release a cluster may be, oldest first."""
    return [f"1.{m}" for m in range(OLDEST_MINOR, newest_minor() + 1)]


@functools.lru_cache(maxsize=256)
def parse(text: str) -> KubeVersion:
    """``1.14``, ``v1.14`` or ``1.14.10`` (``VersionError`` when not served)."""
    m = _VERSION.match(text.strip())
    if not m:
        raise VersionError(f"{text!r} is not a Kubernetes version (expected 1.MINOR or 1.MINOR.PATCH)")
    v = KubeVersion(int(m.group(1)), int(m.group(2) or 0))
    if not OLDEST_MINOR <= v.minor <= newest_minor():
        raise VersionError(
            f"Kubernetes {v.name} is not supported: supported are 1.{OLDEST_MINOR} to 1.{newest_minor()}"
        )
    return v


# ------------------------------------------------------------------ the table

#: group/version -> (first minor, last minor or None while served): the built-in
#: group/versions an API server serves by default. Older "first" values are upstream's
#: and only say the group/version predates 1.13.
SERVED_GROUP_VERSIONS: Final[dict[str, tuple[int, int | None]]] = {
    "v1": (0, None),
    "admissionregistration.k8s.io/v1": (16, None),
    "admissionregistration.k8s.io/v1beta1": (9, 21),
    "apiextensions.k8s.io/v1": (16, None),
    "apiextensions.k8s.io/v1beta1": (7, 21),
    "apiregistration.k8s.io/v1": (10, None),
    "apiregistration.k8s.io/v1beta1": (7, 21),
    "apps/v1": (9, None),
    "apps/v1beta1": (5, 15),
    "apps/v1beta2": (8, 15),
    "authentication.k8s.io/v1": (6, None),
    "authentication.k8s.io/v1beta1": (3, 21),
    "authorization.k8s.io/v1": (6, None),
    "authorization.k8s.io/v1beta1": (3, 21),
    "autoscaling/v1": (2, None),
    "autoscaling/v2": (23, None),
    "autoscaling/v2beta1": (8, 24),
    "autoscaling/v2beta2": (12, 25),
    "batch/v1": (0, None),
    "batch/v1beta1": (8, 24),
    "certificates.k8s.io/v1": (19, None),
    "certificates.k8s.io/v1beta1": (4, 21),
    "coordination.k8s.io/v1": (14, None),
    "coordination.k8s.io/v1beta1": (12, 21),
    "discovery.k8s.io/v1": (21, None),
    "discovery.k8s.io/v1beta1": (17, 24),
    "events.k8s.io/v1": (19, None),
    "events.k8s.io/v1beta1": (8, 24),
    "extensions/v1beta1": (0, 21),
    "flowcontrol.apiserver.k8s.io/v1": (29, None),
    "flowcontrol.apiserver.k8s.io/v1beta1": (20, 25),
    "flowcontrol.apiserver.k8s.io/v1beta2": (23, 28),
    "flowcontrol.apiserver.k8s.io/v1beta3": (26, 31),
    "networking.k8s.io/v1": (7, None),
    "networking.k8s.io/v1beta1": (14, 21),
    "node.k8s.io/v1": (20, None),
    "node.k8s.io/v1beta1": (14, 24),
    "policy/v1": (21, None),
    "policy/v1beta1": (5, 24),
    "rbac.authorization.k8s.io/v1": (8, None),
    "rbac.authorization.k8s.io/v1beta1": (6, 21),
    "resource.k8s.io/v1": (34, None),
    "scheduling.k8s.io/v1": (14, None),
    "scheduling.k8s.io/v1beta1": (11, 21),
    "storage.k8s.io/v1": (6, None),
    "storage.k8s.io/v1beta1": (6, 26),
}

#: (group/version, kind) -> last minor serving it, where that is before the
#: group/version's own end (the OpenAPI definitions keep listing some of them).
KIND_LAST_MINOR: Final[dict[tuple[str, str], int]] = {
    ("extensions/v1beta1", "DaemonSet"): 15,
    ("extensions/v1beta1", "Deployment"): 15,
    ("extensions/v1beta1", "ReplicaSet"): 15,
    ("extensions/v1beta1", "NetworkPolicy"): 15,
    ("extensions/v1beta1", "PodSecurityPolicy"): 15,
    ("storage.k8s.io/v1beta1", "StorageClass"): 21,
    ("storage.k8s.io/v1beta1", "VolumeAttachment"): 21,
    ("storage.k8s.io/v1beta1", "CSIDriver"): 21,
    ("storage.k8s.io/v1beta1", "CSINode"): 21,
}

#: (group, kind) served under another group as well: the group whose objects they are.
ALIASES: Final[dict[tuple[str, str], str]] = {
    ("extensions", "DaemonSet"): "apps",
    ("extensions", "Deployment"): "apps",
    ("extensions", "ReplicaSet"): "apps",
    ("extensions", "Ingress"): "networking.k8s.io",
    ("extensions", "NetworkPolicy"): "networking.k8s.io",
    ("extensions", "PodSecurityPolicy"): "policy",
    ("events.k8s.io", "Event"): "",
}


def _version_rank(version: str) -> tuple[int, int, int]:
    """Upstream's discovery order: GA before beta before alpha, newer first."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (3, 0, 0)
    stability = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stability, -int(m.group(1)), -int(m.group(3) or 0))


def _served_gv(gv: str, minor: int) -> bool:
    span = SERVED_GROUP_VERSIONS.get(gv)
    if span is None:
        return False
    first, last = span
    return first <= minor and (last is None or minor <= last)


def served_group_versions(version: str) -> dict[str, list[str]]:
    """group -> versions served by default at ``version`` (``1.14``), preferred first."""
    minor = parse(version).minor
    out: dict[str, list[str]] = {}
    for gv in SERVED_GROUP_VERSIONS:
        if _served_gv(gv, minor):
            group, _, v = gv.rpartition("/")
            out.setdefault(group, []).append(v)
    return {g: sorted(vs, key=_version_rank) for g, vs in sorted(out.items())}


def serves(version: str, api_version: str, kind: str) -> bool:
    """Whether a server of ``version`` serves ``kind`` in ``api_version`` by default."""
    minor = parse(version).minor
    if not _served_gv(api_version, minor):
        return False
    last = KIND_LAST_MINOR.get((api_version, kind))
    if last is not None and minor > last:
        return False
    group, _, v = api_version.rpartition("/")
    return (group, v, kind) in gvk_index(parse(version).name)


#: first minor publishing custom resource schemas in /openapi/v2 (beta in 1.15)
CRD_OPENAPI_MINOR: Final = 15
#: first minor with server-side apply on by default (beta in 1.16), and managedFields
SERVER_SIDE_APPLY_MINOR: Final = 16
#: first minor serving /openapi/v3 by default (the OpenAPIV3 gate went beta in 1.24)
OPENAPI_V3_MINOR: Final = 24
#: first minor honouring ``fieldValidation`` (ServerSideFieldValidation beta in 1.25);
#: before it a server drops unknown fields silently, whatever the request asks
FIELD_VALIDATION_MINOR: Final = 25


def aggregated_discovery(version: str) -> tuple[str, ...]:
    """The ``apidiscovery.k8s.io`` versions /api and /apis answer in (none before 1.26)."""
    minor = parse(version).minor
    return tuple(v for v, first, last in (("v2", 30, None), ("v2beta1", 26, 32))
                 if first <= minor and (last is None or minor <= last))


def server_side_apply(version: str) -> bool:
    """Whether a server of ``version`` accepts apply patches and records managedFields."""
    return parse(version).minor >= SERVER_SIDE_APPLY_MINOR


def serves_openapi_v3(version: str) -> bool:
    """Whether a server of ``version`` serves ``/openapi/v3`` by default."""
    return parse(version).minor >= OPENAPI_V3_MINOR


def validates_fields(version: str) -> bool:
    """Whether a server of ``version`` honours the ``fieldValidation`` parameter."""
    return parse(version).minor >= FIELD_VALIDATION_MINOR


# ------------------------------------------------------------------ definitions


@functools.cache
def _old_definitions() -> dict[str, dict[str, Any]]:
    ref = resources.files("federationd.sim").joinpath("data/k8s-schemas-old.json.xz")
    with resources.as_file(ref) as path:
        loaded: dict[str, dict[str, Any]] = json.loads(lzma.decompress(path.read_bytes()))
    return loaded


@functools.cache
def definitions(version: str) -> dict[str, Any]:
    """The upstream definitions of a release (``1.14``), keyed like ``io.k8s.api.apps.v1.Deployment``."""
    v = parse(version)
    if v.minor <= _LAST_SHIPPED_MINOR:
        return _old_definitions()[v.name]
    # The "-strict" flavour differs from the plain one only by additionalProperties:
    # false on every struct, which is exactly what tells an unknown field from a map key.
    ref = resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{v.name}.0-local-strict/_definitions.json"
    )
    with resources.as_file(ref) as path, open(path, encoding="utf-8") as f:
        raw = json.load(f)
    defs: dict[str, Any] = raw["$defs"]
    return defs


@functools.cache
def gvk_index(version: str) -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, for every kind a release defines."""
    index: dict[tuple[str, str, str], str] = {}
    for name, definition in definitions(version).items():
        for gvk in definition.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


# ------------------------------------------------------------------ kinds


def _variants(base: Kind, minor_name: str) -> list[Kind]:
    """``base`` (a storage-form built-in) in every other group/version the release serves it in."""
    out: list[Kind] = []
    groups = [base.group] + [g for (g, k), target in ALIASES.items() if k == base.kind and target == base.group]
    for (group, version, kind) in gvk_index(minor_name):
        if kind != base.kind or group not in groups or (group, version) == (base.group, base.version):
            continue
        api_version = f"{group}/{version}" if group else version
        if not serves(minor_name, api_version, kind):
            continue
        out.append(dataclasses.replace(base, group=group, version=version, storage=base.resource))
    return out


def _served_builtin(k: Kind, name: str) -> bool:
    """Whether a release serves a built-in kind of the emulator in its own version."""
    if k.api_version not in SERVED_GROUP_VERSIONS:
        return True  # no upstream group/version the table knows: served as declared
    gvk = (k.group, k.version, k.kind)
    if gvk not in gvk_index(name) and gvk not in gvk_index(f"1.{newest_minor()}") and gvk not in gvk_index(DEFAULT_VERSION):
        # a kind no release describes (the emulator's own) follows its group/version
        return _served_gv(k.api_version, parse(name).minor)
    return serves(name, k.api_version, k.kind)


@functools.cache
def _kinds_for(version: str) -> tuple[tuple[Kind, ...], tuple[Kind, ...]]:
    name = parse(version).name
    served: list[Kind] = []
    hidden: list[Kind] = []
    paths = {(k.group, k.version, k.plural) for k in BUILTINS}
    for k in BUILTINS:
        (served if _served_builtin(k, name) else hidden).append(k)
    for k in BUILTINS:
        if k.storage is not None:
            continue
        for variant in _variants(k, name):
            # a version the emulator declares itself, or one another base already gave, wins
            if (variant.group, variant.version, variant.plural) not in paths:
                paths.add((variant.group, variant.version, variant.plural))
                served.append(variant)
    served.sort(key=lambda k: (k.group, _version_rank(k.version)))
    return tuple(served), tuple(hidden)


def registry_for(version: str = DEFAULT_VERSION) -> Registry:
    """The registry of a cluster of ``version``: see the module docstring."""
    served, hidden = _kinds_for(parse(version).name)
    r = Registry()
    for k in served:
        r.add(k)
    for k in hidden:
        r.add_storage_only(k)
    return r
