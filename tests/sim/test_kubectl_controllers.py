"""kubectl against the controllers that work on a schedule or keep history: CronJobs
that start Jobs (on a clock the test drives), ControllerRevisions behind ``kubectl
rollout history|undo`` of DaemonSets and StatefulSets, and PersistentVolumeClaims bound
by the default StorageClass's provisioner. Same harness as ``test_kubectl``; this
module has its own fleet, whose master's clock it moves.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest

from federationd.sim import Fleet
from tests.sim.conftest import unique, wait_for
from tests.sim.test_kubectl import KUBECTL, Kubectl, kubectl

__all__ = ["kubectl"]

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(shutil.which(KUBECTL) is None, reason=f"{KUBECTL} is not installed on this machine"),
]


class Clock:
    """A wall clock the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _json(kubectl: Kubectl, *args: str) -> Any:
    _, out, _ = await kubectl.run("master", *args, "-o", "json")
    return json.loads(out)


async def test_cronjob_starts_jobs_on_its_schedule(kubectl: Kubectl, fleet: Fleet) -> None:
    master = fleet["master"]
    clock = Clock()
    master.store.clock = clock
    name = unique("tick")
    await kubectl.run("master", "create", "cronjob", name, "--image=busybox:1.36", "--schedule=*/5 * * * *",
                      "--", "echo", "hi")
    _, out, _ = await kubectl.run("master", "get", "cronjob", name)
    assert out.split("\n")[1].split()[1:4] == ["*/5", "*", "*"], out

    async def owned_jobs() -> list[dict[str, Any]]:
        jobs = (await _json(kubectl, "get", "jobs"))["items"]
        return [j for j in jobs if any(r.get("kind") == "CronJob" and r.get("name") == name
                                       for r in j["metadata"].get("ownerReferences") or [])]

    starts: list[int] = []
    for _ in range(4):
        # to 10 s past the next multiple of five minutes
        now = clock()
        clock.offset += (300 - now % 300) + 10
        master.behaviours.controllers.sync_cronjobs()
        scheduled = int(clock() // 300 * 300)
        starts.append(scheduled)
        job = f"{name}-{scheduled // 60}"
        await wait_for(lambda job=job: job in [j["metadata"]["name"] for j in master.store.list("batch/v1", "Job")],
                       what=f"job {job}")
        await kubectl.run("master", "wait", "--for=condition=complete", f"job/{job}", "--timeout=20s")
        cj = await _json(kubectl, "get", "cronjob", name)
        await wait_for(lambda: not (master.store.get("batch/v1", "CronJob", name, "default") or {})
                       .get("status", {}).get("active"), what="no active job")
        cj = await _json(kubectl, "get", "cronjob", name)
        assert cj["status"]["lastScheduleTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(scheduled))
        assert "lastSuccessfulTime" in cj["status"]
        j = master.store.get("batch/v1", "Job", job, "default")
        assert j is not None
        assert j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(scheduled))
    # the default successfulJobsHistoryLimit keeps the newest three
    master.behaviours.controllers.sync_cronjobs()
    await wait_for(lambda: len([j for j in master.store.list("batch/v1", "Job", "default")
                                if j["metadata"]["name"].startswith(f"{name}-")]) == 3, what="history pruned")
    kept = sorted(j["metadata"]["name"] for j in await owned_jobs())
    assert kept == sorted(f"{name}-{s // 60}" for s in starts[1:]), kept
    _, out, _ = await kubectl.run("master", "describe", "cronjob", name)
    assert "SuccessfulCreate" in out and "SawCompletedJob" in out and "SuccessfulDelete" in out, out

    # an hour of missed schedules starts one Job, for the most recent of them
    clock.offset += 3600
    master.behaviours.controllers.sync_cronjobs()
    latest = int(clock() // 300 * 300)
    await wait_for(lambda: master.store.get("batch/v1", "Job", f"{name}-{latest // 60}", "default") is not None,
                   what="the most recent missed job")
    # (it may complete and push the oldest out of the history meanwhile)
    names = {j["metadata"]["name"] for j in await owned_jobs()}
    assert f"{name}-{latest // 60}" in names and names <= {*kept, f"{name}-{latest // 60}"}, names

    # suspended: the schedule passes and nothing starts
    await kubectl.run("master", "patch", "cronjob", name, "-p", '{"spec":{"suspend":true}}')
    clock.offset += 600
    master.behaviours.controllers.sync_cronjobs()
    skipped = int(clock() // 300 * 300)
    assert master.store.get("batch/v1", "Job", f"{name}-{skipped // 60}", "default") is None

    # a Job made from it by hand runs, and is not taken into the CronJob's active list
    await kubectl.run("master", "create", "job", f"{name}-manual", f"--from=cronjob/{name}")
    await kubectl.run("master", "wait", "--for=condition=complete", f"job/{name}-manual", "--timeout=20s")


async def test_cronjob_schedules_are_validated_like_the_server(kubectl: Kubectl) -> None:
    code, _, err = await kubectl.run("master", "create", "cronjob", unique("bad"), "--image=busybox:1.36",
                                     "--schedule=61 * * * *", check=False)
    assert code != 0
    assert 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61' in err, err
    code, _, err = await kubectl.run("master", "create", "cronjob", unique("bad"), "--image=busybox:1.36",
                                     "--schedule=* * * *", check=False)
    assert code != 0 and "expected exactly 5 fields, found 4: [* * * *]" in err, err


@pytest.mark.parametrize("kind", ["daemonset", "statefulset"])
async def test_rollout_history_and_undo(kubectl: Kubectl, fleet: Fleet, kind: str) -> None:
    name = unique(kind[:3])
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}
    if kind == "statefulset":
        spec.update(replicas=2, serviceName=name)
    obj = {"apiVersion": "apps/v1", "kind": "DaemonSet" if kind == "daemonset" else "StatefulSet",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec}
    await kubectl.run("master", "apply", "-f", kubectl.write(name, obj))
    await kubectl.run("master", "rollout", "status", f"{kind}/{name}", "--timeout=30s")
    await kubectl.run("master", "set", "image", f"{kind}/{name}", "c=busybox:1.37")
    await kubectl.run("master", "rollout", "status", f"{kind}/{name}", "--timeout=30s")

    async def history() -> list[list[str]]:
        _, out, _ = await kubectl.run("master", "rollout", "history", f"{kind}/{name}")
        lines = out.strip().splitlines()
        assert lines[0].strip() == f"{kind}.apps/{name}" and lines[1].split() == ["REVISION", "CHANGE-CAUSE"], out
        return [ln.split() for ln in lines[2:]]

    assert await history() == [["1", "<none>"], ["2", "<none>"]]
    _, out, _ = await kubectl.run("master", "rollout", "history", f"{kind}/{name}", "--revision=1")
    assert "busybox:1.36" in out and "busybox:1.37" not in out, out
    revs = (await _json(kubectl, "get", "controllerrevisions", "-l", f"app={name}"))["items"]
    assert sorted(r["revision"] for r in revs) == [1, 2]
    assert all(r["metadata"]["ownerReferences"][0]["name"] == name for r in revs)

    _, out, _ = await kubectl.run("master", "rollout", "undo", f"{kind}/{name}")
    assert out.strip() == f"{kind}.apps/{name} rolled back", out
    await kubectl.run("master", "rollout", "status", f"{kind}/{name}", "--timeout=30s")
    # the first template is current again: its revision is now the newest
    assert await history() == [["2", "<none>"], ["3", "<none>"]]
    _, out, _ = await kubectl.run("master", "get", "pods", "-l", f"app={name}", "-o",
                                  "jsonpath={.items[*].spec.containers[0].image}")
    assert set(out.split()) == {"busybox:1.36"}, out


def _pvc(name: str, *, size: str = "1Gi", cls: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def _pod(name: str, claim: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}


async def test_default_storage_class_provisions_for_the_first_consumer(kubectl: Kubectl, fleet: Fleet) -> None:
    _, out, _ = await kubectl.run("master", "get", "storageclass")
    assert out.splitlines()[1].split()[:5] == ["standard", "(default)", "rancher.io/local-path", "Delete",
                                               "WaitForFirstConsumer"], out
    claim, pod = unique("data"), unique("user")
    _, out, _ = await kubectl.run("master", "apply", "-f", kubectl.write(claim, _pvc(claim)), "-o", "json")
    assert json.loads(out)["spec"]["storageClassName"] == "standard"
    # no consumer yet: the claim waits
    _, out, _ = await kubectl.run("master", "get", "pvc", claim)
    assert out.splitlines()[1].split()[1] == "Pending", out
    await kubectl.run("master", "apply", "-f", kubectl.write(pod, _pod(pod, claim)))
    await kubectl.run("master", "wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{claim}", "--timeout=20s")
    await kubectl.run("master", "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=20s")
    pvc = await _json(kubectl, "get", "pvc", claim)
    pv = await _json(kubectl, "get", "pv", pvc["spec"]["volumeName"])
    node = (await _json(kubectl, "get", "pod", pod))["spec"]["nodeName"]
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == node
    assert pvc["status"]["capacity"] == {"storage": "1Gi"} and pvc["status"]["accessModes"] == ["ReadWriteOnce"]
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == claim
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [node]
    _, out, _ = await kubectl.run("master", "get", "pvc", claim)
    row = out.splitlines()[1].split()
    assert row[1:5] == ["Bound", pv["metadata"]["name"], "1Gi", "RWO"], out
    # the claim goes with its Pod, and the provisioned volume with the claim (reclaimPolicy Delete)
    await kubectl.run("master", "delete", "pod", pod, "--wait=true")
    await kubectl.run("master", "delete", "pvc", claim, "--wait=true")
    await kubectl.run("master", "wait", "--for=delete", f"pv/{pv['metadata']['name']}", "--timeout=20s", check=False)
    await wait_for(lambda: fleet["master"].store.get("v1", "PersistentVolume", pv["metadata"]["name"]) is None,
                   what="volume deleted")


async def test_claims_bind_existing_volumes_and_pods_wait_for_them(kubectl: Kubectl, fleet: Fleet) -> None:
    claim, pod, pv_name = unique("static"), unique("waiter"), unique("pv")

    async def pv(name: str, size: str, cls: str) -> None:
        await kubectl.run("master", "apply", "-f", kubectl.write(name, {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/srv/{name}"}}}))

    # an administrator's volumes: a claim binds the smallest that fits
    for suffix, size in (("small", "1Gi"), ("big", "5Gi"), ("mid", "3Gi")):
        await pv(f"{pv_name}-{suffix}", size, "manual")
    await kubectl.run("master", "apply", "-f", kubectl.write(claim, _pvc(claim, size="2Gi", cls="manual")))
    await kubectl.run("master", "wait", "--for=jsonpath={.status.phase}=Bound", f"pvc/{claim}", "--timeout=20s")
    assert (await _json(kubectl, "get", "pvc", claim))["spec"]["volumeName"] == f"{pv_name}-mid"
    _, out, _ = await kubectl.run("master", "get", "pv", f"{pv_name}-small", f"{pv_name}-big", f"{pv_name}-mid")
    rows = [r.split() for r in out.splitlines()[1:]]
    assert [r[4] for r in rows] == ["Available", "Available", "Bound"] and rows[2][5] == f"default/{claim}", out

    # an Immediate claim of a class no provisioner serves: its Pod cannot be scheduled
    waiting = unique("slow")
    await kubectl.run("master", "apply", "-f", kubectl.write(waiting, _pvc(waiting, cls="slow")))
    await kubectl.run("master", "apply", "-f", kubectl.write(pod, _pod(pod, waiting)))
    await kubectl.run("master", "wait", "--for=condition=PodScheduled=False", f"pod/{pod}", "--timeout=20s")
    p = await _json(kubectl, "get", "pod", pod)
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["message"].startswith("0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."), cond
    # until a volume for it appears
    await pv(f"{pv_name}-slow", "1Gi", "slow")
    await kubectl.run("master", "wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=20s")

    # Retain: the volume outlives its claim, Released
    await kubectl.run("master", "delete", "pvc", claim)
    await kubectl.run("master", "wait", "--for=jsonpath={.status.phase}=Released", f"pv/{pv_name}-mid", "--timeout=20s")


async def test_server_side_applied_claims_get_the_default_class_too(kubectl: Kubectl) -> None:
    claim = unique("ssa")
    _, out, _ = await kubectl.run("master", "apply", "--server-side", "-f", kubectl.write(claim, _pvc(claim)), "-o", "json")
    assert json.loads(out)["spec"]["storageClassName"] == "standard"
    # an explicit empty class stays empty (no dynamic provisioning)
    other = unique("none")
    _, out, _ = await kubectl.run("master", "apply", "-f", kubectl.write(other, _pvc(other, cls="")), "-o", "json")
    assert json.loads(out)["spec"]["storageClassName"] == ""


async def test_statefulset_claims_from_volume_claim_templates(kubectl: Kubectl) -> None:
    name = unique("db")
    obj = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": 2, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                        {"name": "c", "image": "busybox:1.36", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    await kubectl.run("master", "apply", "-f", kubectl.write(name, obj))
    await kubectl.run("master", "rollout", "status", f"statefulset/{name}", "--timeout=30s")
    _, out, _ = await kubectl.run("master", "get", "pvc", "-l", f"app={name}")
    rows = sorted(r.split()[:2] for r in out.splitlines()[1:])
    assert rows == [[f"data-{name}-0", "Bound"], [f"data-{name}-1", "Bound"]], out
    pod = await _json(kubectl, "get", "pod", f"{name}-1")
    assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}-1"}} in pod["spec"]["volumes"]
    pv = await _json(kubectl, "get", "pv", (await _json(kubectl, "get", "pvc", f"data-{name}-1"))["spec"]["volumeName"])
    node = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    assert pod["spec"]["nodeName"] == node
