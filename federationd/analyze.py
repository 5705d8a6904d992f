"""``federationd analyze``: does this multi-cluster mesh carry traffic on real clusters?

The checks themselves live in :mod:`federationd.projections.analysis` (pure functions of
a :class:`MeshView`, which the running daemon also evaluates on its derived state and
reports as the Istio CR's ``MeshAnalyzed`` condition). This module only builds the view
and prints the findings: ``--log`` replays the event log's desired state (with each
cluster's served API versions and node localities as the log recorded them); otherwise
it lists the objects of the master (``--kubeconfig``/``--context`` as for ``run``) and of
each remote through the kubeconfig Secrets of its RemoteIstios. Output is a table or
``--json``; the exit code is 1 when any finding is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from federationd.projections.analysis import ClusterView, Finding, MeshView, analyze

Obj = dict[str, Any]

__all__ = ["ClusterView", "Finding", "MeshView", "analyze", "main", "table", "view_from_state"]

# --- output ---------------------------------------------------------------------------------------


def table(findings: Sequence[Finding]) -> str:
    if not findings:
        return "no findings: every check passed\n"
    rows = [("SEVERITY", "CHECK", "CLUSTERS", "OBJECTS", "MESSAGE / FIX")]
    for f in findings:
        rows.append((f.severity, f.check, ",".join(f.clusters), ", ".join(f.objects) or "-", f"{f.message}\n  fix: {f.fix}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        head = "  ".join(r[i].ljust(widths[i]) for i in range(4))
        msg = r[4].split("\n")
        lines.append(f"{head}  {msg[0]}")
        lines += [" " * (sum(widths) + 8) + m for m in msg[1:]]
    return "\n".join(lines) + "\n"


# --- views from a log or from live clusters -----------------------------------------------------


def view_from_state(state: Any) -> MeshView:
    """The mesh as the event log's desired state has it (projections' derive): the view
    the daemon's ``MeshAnalyzed`` condition is computed from."""
    from federationd.projections import derive as d

    return d.mesh_view(state, d.derive(state))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="federationd analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("--log", help="analyze the desired state of this event log instead of live clusters")
    p.add_argument("--until", type=int, default=None, help="with --log: the state at this sequence number")
    p.add_argument("--kubeconfig", help="kubeconfig of the master (as for `run`)")
    p.add_argument("--context", help="context in the kubeconfig")
    p.add_argument("--namespace", default="istio-system", help="control-plane namespace")
    p.add_argument("--cluster-name", default="master", help="the master's name in findings")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    return p


async def _from_log(path: str, until: int | None) -> MeshView:
    from federationd.inspect import open_existing, rebuild

    log = await open_existing(path)
    try:
        state = await rebuild(log, until=until)
    finally:
        await log.close()
    return view_from_state(state)


#: Kinds listed from live clusters (what the checks read).
_LIVE_KINDS = (
    ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "Secret"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("networking.istio.io/v1alpha3", "Gateway"),
    ("networking.istio.io/v1alpha3", "DestinationRule"), ("networking.istio.io/v1alpha3", "EnvoyFilter"),
)


async def _served(cluster: Any) -> tuple[str, ...]:
    """``group/version`` strings from the cluster's discovery documents."""
    core = await cluster.request("GET", "/api", what="discovery")
    out = list((core or {}).get("versions") or [])
    groups = await cluster.request("GET", "/apis", what="discovery")
    for g in (groups or {}).get("groups") or []:
        out += [v["groupVersion"] for v in g.get("versions") or []]
    return tuple(sorted(set(out)))


async def _list_cluster(cluster: Any, namespace: str) -> tuple[tuple[Obj, ...], tuple[str, ...] | None]:
    from federationd.actuators.client import KubeClient
    from federationd.clusters import ApiError

    kube = KubeClient(cluster)
    try:
        apis: tuple[str, ...] | None = await _served(cluster)
    except ApiError:
        apis = None
    objs: list[Obj] = []
    kinds = [*_LIVE_KINDS, *(
        (v, "MutatingWebhookConfiguration") for v in ("admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1")
        if apis is None or v in apis
    )][: len(_LIVE_KINDS) + 1]
    for api_version, kind in kinds:
        try:
            items = (await kube.list(api_version, kind, None)).items
        except ApiError:
            continue
        for o in items:
            meta = o.get("metadata") or {}
            if kind in ("ClusterRole", "MutatingWebhookConfiguration") or meta.get("namespace") in (namespace, "kube-system"):
                if kind == "Secret":
                    # The names of the data keys only: a credential never leaves the cluster.
                    o = {"metadata": meta, "data": dict.fromkeys(o.get("data") or {}, "")}
                objs.append({**o, "apiVersion": api_version, "kind": kind})
    return tuple(objs), apis


async def _from_live(args: argparse.Namespace) -> MeshView:
    from pathlib import Path

    from federationd.actuators.client import KubeClient
    from federationd.clusters import ApiError, connect, kubeconfig_from_secret

    raw = await asyncio.to_thread(Path(args.kubeconfig).read_bytes) if args.kubeconfig else None
    if raw is None:
        raise ValueError("--kubeconfig is required without --log")
    master = await connect(raw, name=args.cluster_name, context=args.context or None)
    clusters: list[ClusterView] = []
    try:
        objs, apis = await _list_cluster(master, args.namespace)
        clusters.append(ClusterView(name=args.cluster_name, role="master", objects=objs, kubernetes_apis=apis))
        kube = KubeClient(master)
        try:
            remotes = (await kube.list("istio.banzaicloud.io/v1beta1", "RemoteIstio", args.namespace)).items
        except ApiError:
            remotes = []
        for r in remotes:
            name = r["metadata"]["name"]
            try:
                secret = await kube.get("v1", "Secret", args.namespace, name)
                remote = await connect(kubeconfig_from_secret(secret, remote_name=name), name=name)
            except Exception as e:  # reported; the other clusters are still analysed
                print(f"federationd analyze: remote {name}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            try:
                robjs, rapis = await _list_cluster(remote, args.namespace)
            finally:
                await remote.close()
            clusters.append(ClusterView(name=name, role="remote", objects=robjs, kubernetes_apis=rapis))
    finally:
        await master.close()
    return MeshView(master=args.cluster_name, namespace=args.namespace, clusters=tuple(clusters))


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv[1:]))
    try:
        view = asyncio.run(_from_log(args.log, args.until) if args.log else _from_live(args))
    except Exception as e:  # one line, not a traceback, for an operator
        print(f"federationd analyze: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    findings = analyze(view)
    if args.json:
        print(json.dumps([msgspec.to_builtins(f) for f in findings], indent=2, sort_keys=True))
    else:
        sys.stdout.write(table(findings))
    return 1 if any(f.severity == "error" for f in findings) else 0
