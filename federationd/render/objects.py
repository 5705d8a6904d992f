"""Shared vocabulary of every rendered Kubernetes object.

Rendering produces plain ``dict`` objects (exactly what goes on the wire), so the
actuator can server-side apply them without a translation layer. This module holds what
every builder must agree on:

* the inventory labels — every object carries ``app.kubernetes.io/managed-by:
  federationd`` (how the actuator knows what it owns) and the component that rendered
  it (how a disabled component's objects are found and removed);
* :class:`RenderFacts`, the facts about the world that rendering needs beyond the spec
  (which cluster, which network, the mesh networks, the CA material present, observed
  localities). Projections fill it from the event log; render never looks anything up;
* canonical serialisation (sorted keys) and a stable content hash, used by golden tests,
  by the pilot pod-template hash of meshNetworks and by the actuator's "what differs".
  Both go through C encoders (msgspec for JSON, LibYAML for YAML when PyYAML was built
  with it): at fleet scale encoding was most of the daemon's CPU. Their output is
  byte-identical to the pure-Python encoders' (``json.dumps(sort_keys=True)``, PyYAML's
  emitter), which the golden files and the content hashes already in event logs pin.

Upstream of the mesh networks (``MeshNetwork``, ``NetworkGateway``, and
``RenderFacts.network_endpoints`` with its memo, ``_endpoints`` / ``moved_at``): the
operator's release-1.2 ``pkg/apis/istio/v1beta1/istio_types.go`` (``MeshNetwork``:
``endpoints`` of ``fromCidr`` / ``fromRegistry``, ``gateways`` of ``address`` / ``port``),
rendered as ``meshNetworks`` by ``render.mesh`` (the operator's
``pkg/resources/common/configmap.go``, Istio 1.1.14 / 1.2.8 helm
``istio/templates/configmap.yaml``). ``network_endpoints`` (the networks without their
gateways) feeds pilot's restart hash (``render.components.pilot``), where the operator's
``pkg/resources/pilot/deployment.go`` hashes the whole ``meshNetworks``
(``MESHNETWORKS_HASH``): a deviation named there. A gateway may also be a
``registryServiceName``, which Istio's ``MeshNetworks`` proto has and the operator's
struct did not.

Everything here is pure: no I/O, clock or randomness.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec
import yaml

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "federationd"
#: Which component rendered an object ("citadel", "pilot", "crds", "mesh", …).
COMPONENT_LABEL = "federationd.io/component"
#: Annotation on pod templates carrying a hash of inputs that must restart the pods.
CONFIG_HASH_ANNOTATION = "federationd.io/config-hash"

Obj = dict[str, Any]

ClusterRole = Literal["master", "remote"]


# --- facts ---------------------------------------------------------------------------


class NetworkGateway(msgspec.Struct, frozen=True, kw_only=True):
    """One gateway of a mesh network: an IP address (Istio 1.1/1.2 only use IPs) or a
    registry service name, and its port."""

    address: str = ""
    registry_service_name: str = ""
    port: int = 443


class MeshNetwork(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of Istio's ``meshNetworks``: which endpoints belong to the network
    (by registry or CIDR) and through which gateways other networks reach it."""

    name: str
    from_registry: tuple[str, ...] = ()
    from_cidr: tuple[str, ...] = ()
    gateways: tuple[NetworkGateway, ...] = ()


class RenderFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What rendering needs to know beyond the spec, derived by projections.

    ``network`` is the network name of the cluster being rendered (``ISTIO_META_NETWORK``
    of its gateways and sidecars); empty means single-network. ``mesh_networks`` is the
    whole mesh's network list in a stable order. ``ca_secret_name`` names a Secret with
    plugged-in CA material (``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem``,
    ``cert-chain.pem``) known to exist on the cluster; empty means citadel runs a
    self-signed CA unless the spec names one. ``ca_fingerprint`` is that Secret's public
    fingerprint: it goes into citadel's pod-template hash, so a new CA restarts citadel.
    ``localities`` are the ``region/zone`` pairs observed on the mesh's nodes, sorted.
    ``kubernetes_apis`` are the ``group/version`` strings the cluster serves (from its
    discovery), sorted; empty means not observed, and rendering then uses the GA
    versions (see :func:`federationd.render.components.context.api_version`).
    """

    cluster: str = "master"
    role: ClusterRole = "master"
    network: str = ""
    mesh_networks: tuple[MeshNetwork, ...] = ()
    ca_secret_name: str = ""
    localities: tuple[str, ...] = ()
    ca_fingerprint: str = ""
    kubernetes_apis: tuple[str, ...] = ()
    #: ``mesh_networks`` without their gateways (always set from it): what a component
    #: that must not change when a gateway moves reads — pilot's restart hash — so that
    #: the render cache does not rebuild it for a new gateway address.
    network_endpoints: tuple[MeshNetwork, ...] = ()

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "network_endpoints", _endpoints(self.mesh_networks))


#: The latest ``network_endpoints`` by ``mesh_networks`` (one tuple of networks serves
#: every cluster's facts in a derivation)
_ENDPOINTS: dict[int, tuple[tuple[MeshNetwork, ...], tuple[MeshNetwork, ...]]] = {}


def _endpoints(networks: tuple[MeshNetwork, ...]) -> tuple[MeshNetwork, ...]:
    e = _ENDPOINTS.get(id(networks))
    if e is not None and e[0] is networks:
        return e[1]
    last = next(reversed(_ENDPOINTS.values()), None)
    if last is not None and len(last[0]) == len(networks):
        # the last networks but a few (a moved gateway): those few stripped again, and
        # the same tuple when their endpoints did not change
        at = moved_at(last[0], networks)
        out = list(last[1])
        for i in at:
            out[i] = _stripped(networks[i])
        same = all(out[i] == last[1][i] for i in at)
        result = last[1] if same else tuple(out)
    else:
        result = tuple(_stripped(n) for n in networks)
    if len(_ENDPOINTS) >= 16:
        _ENDPOINTS.clear()
    _ENDPOINTS[id(networks)] = (networks, result)
    return result


def moved_at(old: Sequence[Any], new: Sequence[Any]) -> list[int]:
    """The positions where two sequences of the same length do not hold the same object
    (the test runs in C: a derivation's copy-on-write results share what did not move)."""
    return list(itertools.compress(range(len(new)), map(operator.is_not, old, new)))


def _stripped(n: MeshNetwork) -> MeshNetwork:
    return msgspec.structs.replace(n, gateways=()) if n.gateways else n


# --- metadata ------------------------------------------------------------------------


def labels(component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The inventory labels plus ``extra``; inventory labels always win."""
    out = dict(extra or {})
    out[MANAGED_BY_LABEL] = MANAGED_BY
    out[COMPONENT_LABEL] = component
    return out


def metadata(
    name: str,
    *,
    component: str,
    namespace: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    meta: Obj = {"name": name, "labels": labels(component, extra_labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def obj(
    api_version: str,
    kind: str,
    name: str,
    *,
    component: str,
    namespace: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **body: Any,
) -> Obj:
    """A Kubernetes object: apiVersion, kind, metadata and the given top-level fields
    (``spec=…``, ``data=…``, ``rules=…``, …)."""
    out: Obj = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": metadata(
            name,
            component=component,
            namespace=namespace,
            extra_labels=extra_labels,
            annotations=annotations,
        ),
    }
    out.update(body)
    return out


def ref(o: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
    meta = o["metadata"]
    ns = meta.get("namespace")
    return f"{o['kind']}/{ns}/{meta['name']}" if ns else f"{o['kind']}/{meta['name']}"


def component_of(o: Mapping[str, Any]) -> str:
    return str(o["metadata"]["labels"][COMPONENT_LABEL])


# --- ordering ------------------------------------------------------------------------

# Helm's install order, extended: definitions and namespaces before anything that lives
# in them, identities before the workloads that use them, webhooks after the services
# they call, custom resources last (their CRDs must be established first).
_KIND_ORDER = (
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Endpoints",
    "DaemonSet",
    "Pod",
    "Deployment",
    "StatefulSet",
    "Job",
    "HorizontalPodAutoscaler",
    "Ingress",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_KIND_RANK = {k: i for i, k in enumerate(_KIND_ORDER)}


def sort_key(o: Mapping[str, Any]) -> tuple[int, str, str, str, str]:
    meta = o["metadata"]
    return (
        _KIND_RANK.get(o["kind"], len(_KIND_ORDER)),
        o["kind"],
        o["apiVersion"],
        meta.get("namespace", ""),
        meta["name"],
    )


def sorted_objects(objs: Iterable[Obj]) -> list[Obj]:
    return sorted(objs, key=sort_key)


# --- serialisation -------------------------------------------------------------------


_json = msgspec.json.Encoder(order="sorted")


def _plain(o: Any, *, tuples: bool, floats: bool) -> bool:
    """Is ``o`` made only of dicts with str keys, lists (and tuples, if ``tuples``), and
    str/int/bool/None scalars (and floats, if ``floats``)?"""
    scalars = (str, int, bool, float) if floats else (str, int, bool)
    stack = [o]
    while stack:
        x = stack.pop()
        t = type(x)
        if t is dict:
            for k, v in x.items():
                if type(k) is not str:
                    return False
                stack.append(v)
        elif t is list or (tuples and t is tuple):
            stack.extend(x)
        elif t not in scalars and x is not None:
            return False
    return True


def _plain_json(o: Any) -> bool:
    """Is ``o`` made only of what msgspec and ``json.dumps`` write the same way? (str keys,
    str/int/bool/None scalars, lists, tuples, dicts; floats are written differently —
    ``1e+16`` against ``1e16`` —, so an object holding one takes the slow path.)"""
    return _plain(o, tuples=True, floats=False)


def canonical_json(o: Any) -> bytes:
    """Sorted keys, no whitespace: equal content ⇒ equal bytes.

    The bytes are those of ``json.dumps(o, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, written by msgspec's C encoder when ``o`` is plain data it
    writes identically, else by ``json`` itself."""
    if _plain_json(o):
        return _json.encode(o)
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(o: Any) -> str:
    """A stable sha256 of an object's content (hex)."""
    return hashlib.sha256(canonical_json(o)).hexdigest()


def json_hash(o: Any) -> str:
    """A stable sha256 (hex) of msgspec's sorted-key JSON of ``o`` (plain data or
    structs), without ``canonical_json``'s check that ``json.dumps`` would write the
    same bytes: for hashes the process computes and compares itself (the desired
    state's), not objects' content hashes, which are recorded in the log."""
    return hashlib.sha256(_json.encode(o)).hexdigest()


#: LibYAML's emitter when PyYAML has it (it writes what the Python emitter writes, an
#: order of magnitude faster); the pure-Python one otherwise.
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_SafeDumper):  # type: ignore[valid-type,misc]
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line strings (injection templates, mesh config) stay readable in golden files.
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def to_yaml(o: Any) -> str:
    """One YAML document, keys sorted."""
    return _memo_yaml("to_yaml", o, lambda: yaml.dump(o, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100))


def safe_yaml(o: Any, *, width: int, memo: bool = True) -> str:
    """``yaml.safe_dump(o, sort_keys=True, default_flow_style=False, width=width)``, through
    LibYAML when available (same bytes). ``memo=False`` for a document the caller
    memoises itself (it would only push others out of the shared memo)."""

    def dump() -> str:
        return str(yaml.dump(o, Dumper=_SafeDumper, sort_keys=True, default_flow_style=False, width=width))

    return _memo_yaml(f"safe/{width}", o, dump) if memo else dump()


#: Recent YAML texts by (dumper, JSON of the data): the same document (a mesh config,
#: an injector template) is rendered for many clusters; PyYAML's representer runs in
#: Python even with LibYAML's emitter, so dumping it once matters.
_YAML_MEMO: dict[tuple[str, bytes], str] = {}
_YAML_MEMO_SIZE = 256


def _json_key(o: Any) -> bytes | None:
    """An injective key for YAML input: msgspec's JSON when ``o`` holds no tuple (a tuple
    and a list encode alike but PyYAML may dump them differently) and only str keys."""
    return _json.encode(o) if _plain(o, tuples=False, floats=True) else None


def _memo_yaml(dumper: str, o: Any, dump: Any) -> str:
    raw = _json_key(o)
    if raw is None:
        return str(dump())
    key = (dumper, raw)
    text = _YAML_MEMO.get(key)
    if text is None:
        text = str(dump())
        if len(_YAML_MEMO) >= _YAML_MEMO_SIZE:
            del _YAML_MEMO[next(iter(_YAML_MEMO))]
        _YAML_MEMO[key] = text
    return text


def dump_yaml_stream(objs: Iterable[Obj]) -> str:
    """A multi-document YAML stream (``---`` separated), keys sorted, in the given order."""
    return "".join("---\n" + to_yaml(o) for o in objs)
