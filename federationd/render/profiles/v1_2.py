"""Istio 1.2.x: adapter-specific mixer CRDs gone, AuthorizationPolicy added, and the 1.2
knobs of seed 002 (injection label selectors, namespaces injected by default, citadel
health check and certificate lifetimes, proxy log levels, DNS refresh rate)."""

from __future__ import annotations

from federationd.render.components.context import Profile
from federationd.render.profiles import common

PROFILE = Profile(
    family="1.2",
    crds=(
        *common.NETWORKING,
        *common.AUTHENTICATION,
        *common.RBAC,
        *common.RBAC_AUTHORIZATION_POLICY,
        *common.CONFIG_APIM,
        *common.CONFIG_POLICY,
    ),
    features=frozenset(
        {
            "citadel_health_check",
            "citadel_cert_ttl",
            "inject_selectors",
            "inject_namespaces_by_default",
            "proxy_log_level",
            "proxy_component_log_level",
            "dns_refresh_rate",
            "mixer_adapter_crds_flag",
            "mixer_loadshedding",
            # The 1.2 injector also reads /etc/istio/inject/values (webhook.go loadConfig).
            "inject_values",
            # pilot's and mixer's sidecars mount the node agent's socket directory.
            "control_plane_sds",
        }
    ),
    master=common.MASTER,
    remote=common.REMOTE,
    pilot_env={"PILOT_DISABLE_XDS_MARSHALING_TO_ANY": "1"},
)
