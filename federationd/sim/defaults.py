"""The server-side defaults of built-in workloads that clients rely on being set.

The real server defaults every built-in object on every write (``SetDefaults_*``);
clients dereference some of those fields without checking (``kubectl describe
deployment`` reads ``spec.replicas``), so the emulator sets the ones that matter for
the kinds it serves: replica counts, update strategies, history limits and the pod
template's restart/DNS/scheduler/termination settings. Defaults only fill what is
missing, so applying them twice changes nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

Obj = dict[str, Any]


def _pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _template(spec: Obj) -> None:
    tpl = spec.get("template")
    if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict):
        _pod_spec(tpl["spec"])


def apply(group: str, kind: str, obj: Obj) -> None:
    """Fill in the defaults of ``obj`` (a built-in of ``group``/``kind``) in place."""
    if group == "" and kind == "Secret":
        secret(obj)
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if group == "apps" and kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxUnavailable", "25%")
                    ru.setdefault("maxSurge", "25%")
        _template(spec)
    elif group == "apps" and kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("partition", 0)
        _template(spec)
    elif group == "apps" and kind == "DaemonSet":
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("updateStrategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                ru = strategy.setdefault("rollingUpdate", {})
                if isinstance(ru, dict):
                    ru.setdefault("maxUnavailable", 1)
                    ru.setdefault("maxSurge", 0)
        _template(spec)
    elif group == "apps" and kind == "ReplicaSet":
        spec.setdefault("replicas", 1)
        _template(spec)
    elif group == "" and kind == "Pod":
        _pod_spec(spec)
    elif group == "" and kind == "ReplicationController":
        spec.setdefault("replicas", 1)
        tpl = spec.get("template")
        if not spec.get("selector") and isinstance(tpl, dict):
            labels = (tpl.get("metadata") or {}).get("labels")
            if labels:
                spec["selector"] = dict(labels)
        _template(spec)
    elif group == "batch" and kind == "Job":
        _template(spec)
    elif group == "batch" and kind == "CronJob":
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job = spec.get("jobTemplate")
        if isinstance(job, dict) and isinstance(job.get("spec"), dict):
            _template(job["spec"])
    elif group == "" and kind == "PersistentVolumeClaim":
        spec.setdefault("volumeMode", "Filesystem")


# ---------------------------------------------------------------------------- on every write

def secret(obj: Obj) -> None:
    """What the Secret conversion does on every write: ``stringData`` is merged into
    ``data`` (base64) and dropped, and ``type`` defaults to ``Opaque``."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    if not obj.get("type"):
        obj["type"] = "Opaque"


# ---------------------------------------------------------------------------- on create only

#: what the DefaultTolerationSeconds admission plugin adds to every Pod
DEFAULT_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
)

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: what makes hashes look like ``7c5ddbdf54``."""
    return "".join(_SAFE[ord(ch) % len(_SAFE)] for ch in text)


def template_hash(template: Any) -> str:
    """A pod template's hash (``pod-template-hash``, ``controller-revision-hash``):
    FNV-32a of its canonical JSON, safe-encoded like the controllers' own."""
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))


def on_create(group: str, kind: str, obj: Obj, *, now: str) -> None:
    """Mutations that happen once, when an object is created (after uid and
    timestamps are set): admission plugins (default tolerations, the service account)
    and what the controllers write right after (a Job's selector, the first status of
    Deployments and StatefulSets)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    meta = obj.get("metadata") or {}
    if group == "" and kind in ("PersistentVolumeClaim", "PersistentVolume"):
        # no provisioner binds them: a claim waits, a volume is free
        obj["status"] = {"phase": "Pending" if kind == "PersistentVolumeClaim" else "Available"}
    elif group == "" and kind == "Pod":
        tolerations = spec.setdefault("tolerations", [])
        if isinstance(tolerations, list):
            have = {(t.get("key"), t.get("effect")) for t in tolerations if isinstance(t, dict)}
            for t in DEFAULT_TOLERATIONS:
                if (t["key"], t["effect"]) not in have and (None, "NoExecute") not in have:
                    tolerations.append(dict(t))
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    elif group == "batch" and kind == "Job":
        uid = str(meta.get("uid", ""))
        name = str(meta.get("name", ""))
        if spec.get("completions") is None and spec.get("parallelism") is None:
            spec["completions"] = 1  # both unset: one Pod to completion (else a work queue)
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        if not spec.get("manualSelector"):
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            tpl = spec.setdefault("template", {})
            if isinstance(tpl, dict):
                labels = tpl.setdefault("metadata", {}).setdefault("labels", {})
                labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                               "controller-uid": uid, "job-name": name})
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(
            {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
             "controller-uid": uid, "job-name": name})
    elif group == "apps" and kind == "Deployment":
        replicas = int(spec.get("replicas", 1) or 0)
        rs = f"{meta.get('name', '')}-{template_hash(spec.get('template') or {})}"
        status: Obj = {"observedGeneration": 1}
        if replicas:
            status["unavailableReplicas"] = replicas
        status["conditions"] = [
            {"type": "Available", "status": "False", "lastUpdateTime": now, "lastTransitionTime": now,
             "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
             "reason": "NewReplicaSetCreated", "message": f'Created new replica set "{rs}"'},
        ]
        obj["status"] = status
    elif group == "apps" and kind == "StatefulSet":
        revision = f"{meta.get('name', '')}-{template_hash(spec.get('template') or {})}"
        obj["status"] = {"observedGeneration": 1, "replicas": 0, "availableReplicas": 0,
                         "currentRevision": revision, "updateRevision": revision, "collisionCount": 0}
