"""Istio's own CustomResourceDefinitions for a version family.

The list (group, kind, plural, scope, categories) is profile data taken from the release
charts' ``istio-init`` CRD files. Istio 1.1/1.2 shipped them without schemas; the
apiextensions.k8s.io/v1 API requires a structural one, so each version gets the minimal
structural schema that keeps any content (``x-kubernetes-preserve-unknown-fields``),
which is what the unvalidated v1beta1 originals meant. A cluster that serves
apiextensions.k8s.io/v1beta1 gets the originals' shape (``version``, no schema), as in
helm ``istio-init/files/crd-1{0,1,2}.yaml`` (1.1.14, 1.2.8).
"""

from __future__ import annotations

from federationd.render.components import context as c
from federationd.render.components.context import CrdDef, Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "crds"

_SCHEMA: Obj = {
    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
}


def crd(d: CrdDef, *, api_version: str = "apiextensions.k8s.io/v1") -> Obj:
    names: Obj = {
        "kind": d.kind,
        "listKind": f"{d.kind}List",
        "plural": d.plural,
        "singular": d.kind.lower(),
    }
    if d.categories:
        names["categories"] = list(d.categories)
    spec: Obj = {"group": d.group, "names": names, "scope": d.scope}
    if api_version == "apiextensions.k8s.io/v1beta1":
        spec["version"] = d.version
    else:
        spec["versions"] = [{"name": d.version, "served": True, "storage": True, "schema": _SCHEMA}]
    return obj(
        api_version,
        "CustomResourceDefinition",
        d.name,
        component=COMPONENT,
        extra_labels={"istio": d.group.split(".", 1)[0]},
        spec=spec,
    )


def build(ctx: Ctx) -> list[Obj]:
    version = c.api_version(ctx, "CustomResourceDefinition")
    return [crd(d, api_version=version) for d in ctx.profile.crds]
