"""The simulated fleet: Kubernetes API servers that real clients cannot tell apart.

``Fleet`` starts any number of clusters in one process; ``federationd sim`` serves one
from the command line (``cli``). For tests::

    async with Fleet(["master", ClusterSpec("remote-us", lb="hostname")], directory=d) as fleet:
        c = fleet["master"]
        c.kubeconfig_path, c.kubeconfig, fleet.merged_kubeconfig_path
        c.url, c.ca_path, c.token          # kubernetes-admin (system:masters)
        c.viewer_token                     # user "viewer", bound to the default "view" role
        c.identity_kubeconfig(ns, sa)      # a kubeconfig authenticating as a ServiceAccount
        c.server.rbac, c.server.auth       # the authorizer and the authenticator

        # direct store access (no HTTP; same rules as the API: metadata, generation, ...)
        c.store.create(obj); c.store.update(obj); c.store.get("v1", "Secret", name, ns)
        c.store.list("apps/v1", "Deployment", ns); c.store.remove("v1", "Pod", name, ns)
        c.store.apply_status("v1", "Service", name, ns, {"loadBalancer": {...}})
        c.store.revision, c.store.compact()

        c.requests.total("list", "secrets"); c.requests.mutating(); c.requests.reset()

        c.faults.latency(0.2, verb="list")       # "slow cluster" without a verb
        c.faults.error_rate(rate=0.5, code=503, verb="patch", count=10, duration=5)
        c.faults.throttle(retry_after=2)         # 429 + Retry-After
        c.faults.drop_watches(); c.faults.compact()
        c.faults.partition(5); c.faults.heal()   # refuse connections; may be awaited
        c.faults.clear()

        c.behaviours.lb_enabled = False; c.behaviours.set_load_balancer(ns, svc, [{"ip": ...}])
        c.behaviours.kubelet_enabled = False     # no controllers, scheduler or kubelets
        c.behaviours.hold_ready(ns, workload)    # its new Pods never get Ready (release_ready)
        c.behaviours.restart_pod(ns, pod)        # new pod IP (Endpoints follow)
        c.store.clock = fake; c.behaviours.controllers.sync_cronjobs()  # CronJobs at a moved clock
        c.region, c.zones                        # on the Nodes' topology labels

Modules: ``kinds`` (what is served), ``store`` (MVCC, lifecycle, watch fan-out),
``server`` (HTTP, verbs, admission), ``auth`` (tokens, impersonation), ``rbac``
(authorization, default roles, aggregation, escalation checks), ``discovery``, ``tables``,
``selectors``, ``defaults``, ``protobuf``, ``openapi``, ``versions`` (what each Kubernetes
release serves), ``behaviours``, ``workloads`` (with ``cronjobs`` and ``volumes``),
``injection`` (Istio's sidecar injection webhook, on the Go ``text/template`` of
``gotemplate``), ``faults``, ``fleet``, ``control``; ``patch``, ``ssa``, ``validate``,
``celrules`` and ``semantics`` hold patch semantics, server-side apply, schemas, CRD
validation rules and the server's own validation rules.
"""

from federationd.sim.fleet import Cluster, ClusterSpec, Fleet

__all__ = ["Cluster", "ClusterSpec", "Fleet"]
