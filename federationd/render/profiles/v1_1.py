"""Istio 1.1.x: the full mixer adapter/template CRD set, no 1.2 knobs."""

from __future__ import annotations

from federationd.render.components.context import Profile
from federationd.render.profiles import common

PROFILE = Profile(
    family="1.1",
    crds=(
        *common.NETWORKING,
        *common.AUTHENTICATION,
        *common.RBAC,
        *common.CONFIG_APIM,
        *common.CONFIG_POLICY,
        # 1.1 still served one CRD per mixer adapter and template.
        *common.mixer_kinds(
            ("bypass", "bypasses"),
            ("circonus", "circonuses"),
            ("denier", "deniers"),
            ("fluentd", "fluentds"),
            ("kubernetesenv", "kubernetesenvs"),
            ("listchecker", "listcheckers"),
            ("memquota", "memquotas"),
            ("noop", "noops"),
            ("opa", "opas"),
            ("prometheus", "prometheuses"),
            ("rbac", "rbacs"),
            ("redisquota", "redisquotas"),
            ("signalfx", "signalfxs"),
            ("solarwinds", "solarwindses"),
            ("stackdriver", "stackdrivers"),
            ("statsd", "statsds"),
            ("stdio", "stdios"),
            ("cloudwatch", "cloudwatches"),
            ("dogstatsd", "dogstatsds"),
            ("zipkin", "zipkins"),
            ("apikey", "apikeys"),
            ("authorization", "authorizations"),
            ("checknothing", "checknothings"),
            ("kubernetes", "kuberneteses"),
            ("listentry", "listentries"),
            ("logentry", "logentries"),
            ("edge", "edges"),
            ("metric", "metrics"),
            ("quota", "quotas"),
            ("reportnothing", "reportnothings"),
            ("tracespan", "tracespans"),
        ),
    ),
    # The 1.1 injector parses its template with [[ ]] (pilot/pkg/kube/inject/mesh.go).
    features=frozenset({"mixer_loadshedding", "inject_square_delimiters"}),
    master=common.MASTER,
    remote=common.REMOTE,
)
