"""Istio's own CustomResourceDefinitions for a version family.

The list (group, kind, plural, scope, categories) is profile data taken from the release
charts' ``istio-init`` CRD files. Istio 1.1/1.2 shipped them without schemas; the
apiextensions.k8s.io/v1 API requires a structural one, so each version gets the minimal
structural schema that keeps any content (``x-kubernetes-preserve-unknown-fields``),
which is what the unvalidated v1beta1 originals meant.
"""

from __future__ import annotations

from federationd.render.components.context import CrdDef, Ctx
from federationd.render.objects import Obj, obj

COMPONENT = "crds"

_SCHEMA: Obj = {
    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
}


def crd(d: CrdDef) -> Obj:
    names: Obj = {
        "kind": d.kind,
        "listKind": f"{d.kind}List",
        "plural": d.plural,
        "singular": d.kind.lower(),
    }
    if d.categories:
        names["categories"] = list(d.categories)
    return obj(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        d.name,
        component=COMPONENT,
        extra_labels={"istio": d.group.split(".", 1)[0]},
        spec={
            "group": d.group,
            "names": names,
            "scope": d.scope,
            "versions": [
                {"name": d.version, "served": True, "storage": True, "schema": _SCHEMA}
            ],
        },
    )


def build(ctx: Ctx) -> list[Obj]:
    return [crd(d) for d in ctx.profile.crds]
