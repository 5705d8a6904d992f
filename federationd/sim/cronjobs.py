"""The CronJob controller of a simulated cluster, and the cron schedules it reads.

kube-controller-manager's CronJob controller (``cronjob_controllerv2``) creates a Job
from ``spec.jobTemplate`` at each time the schedule names, named
``<cronjob>-<scheduled time in minutes since the epoch>`` so that a schedule is run at
most once, and folds its Jobs back into the CronJob's status (``active``,
``lastScheduleTime``, ``lastSuccessfulTime``), honouring ``suspend``,
``concurrencyPolicy``, ``startingDeadlineSeconds`` and the two history limits. Only the
most recent missed time is started, as upstream does after a controller outage.

Time comes from the store's clock (``store.clock``), which tests may replace and then
call ``Controllers.sync_cronjobs()``; on a live cluster a timer wakes the controller at
the next scheduled time.

Schedules are parsed like ``robfig/cron``'s ``ParseStandard``, which the API server
validates with and the controller evaluates: five fields (minute, hour, day of month,
month, day of week) with ``*``, ``?``, ranges, steps, lists and month/day names, the
``@yearly`` … ``@hourly`` descriptors and ``@every <duration>``. Its error messages are
the API server's validation messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from federationd.sim import errors
from federationd.sim.store import Obj, deep_copy, parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from federationd.sim.workloads import Controllers

CRONJOBS = ("batch", "cronjobs")
JOBS = ("batch", "jobs")
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
#: the latest a controller waits before looking again, so a changed clock is noticed
MAX_WAIT = 60.0


class ScheduleError(ValueError):
    """A schedule robfig/cron does not parse (the message is its error)."""


# ---------------------------------------------------------------------------- schedules

_STAR = 1 << 63
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS),
)
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _number(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _value(text: str, names: dict[str, int]) -> int:
    found = names.get(text.lower())
    return found if found is not None else _number(text)


def _field(expr: str, lo: int, hi: int, names: dict[str, int]) -> int:
    bits = 0
    for part in expr.split(","):
        range_step = part.split("/")
        low_high = range_step[0].split("-")
        extra = 0
        if range_step[0] in ("*", "?"):
            start, end, extra = lo, hi, _STAR
        else:
            start = _value(low_high[0], names)
            if len(low_high) == 1:
                end = start
            elif len(low_high) == 2:
                end = _value(low_high[1], names)
            else:
                raise ScheduleError(f"too many hyphens: {part}")
        if len(range_step) == 1:
            step = 1
        elif len(range_step) == 2:
            step = _number(range_step[1])
            if len(low_high) == 1 and not extra:
                end = hi  # "N/step" means N through the maximum
            if step > 1:
                extra = 0
        else:
            raise ScheduleError(f"too many slashes: {part}")
        if start < lo:
            raise ScheduleError(f"beginning of range ({start}) below minimum ({lo}): {part}")
        if end > hi:
            raise ScheduleError(f"end of range ({end}) above maximum ({hi}): {part}")
        if start > end:
            raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        if step <= 0:
            raise ScheduleError(f"step of range should be a positive number: {part}")
        for v in range(start, end + 1, step):
            bits |= 1 << v
        bits |= extra
    return bits


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule: bit sets per field, or a constant delay (``@every``)."""

    minute: int = 0
    hour: int = 0
    dom: int = 0
    month: int = 0
    dow: int = 0
    every: float = 0.0

    def _day_matches(self, t: datetime) -> bool:
        dom = bool(1 << t.day & self.dom)
        dow = bool(1 << ((t.weekday() + 1) % 7) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom and dow
        return dom or dow

    def next(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after`` (in its zone), or None within 5 years."""
        if self.every:
            return (after + timedelta(seconds=self.every)).replace(microsecond=0)
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + 5
        while t.year <= limit:
            if not 1 << t.month & self.month:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if not 1 << t.hour & self.hour:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if not 1 << t.minute & self.minute:
                t += timedelta(minutes=1)
                continue
            return t
        return None


def parse_schedule(text: str) -> Schedule:
    """``cron.ParseStandard``."""
    spec = text.strip()
    if not spec:
        raise ScheduleError("empty spec string")
    if spec.startswith("@"):
        if spec.startswith("@every "):
            total, rest = 0.0, spec[len("@every "):].strip()
            pos = 0
            for m in _DURATION.finditer(rest):
                if m.start() != pos:
                    break
                total += float(m.group(1)) * _UNIT[m.group(2)]
                pos = m.end()
            if not rest or pos != len(rest):
                raise ScheduleError(f'failed to parse duration {spec}: time: invalid duration "{rest}"')
            return Schedule(every=max(1.0, float(int(total))))
        expanded = _DESCRIPTORS.get(spec.lower())
        if expanded is None:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
        spec = expanded
    fields = spec.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    bits = [_field(f, lo, hi, names) for f, (lo, hi, names) in zip(fields, _BOUNDS, strict=True)]
    return Schedule(*bits)


def schedule_errors(spec: Any) -> list[tuple[str, str, str]]:
    """(field, reason, message) of a CronJob spec's schedule and time zone, as the API
    server's validation words them."""
    if not isinstance(spec, dict):
        return []
    out: list[tuple[str, str, str]] = []
    schedule = spec.get("schedule")
    if isinstance(schedule, str) and schedule:
        if re.search(r"(?:^|\s)(?:CRON_)?TZ=", schedule):
            out.append(("spec.schedule", "FieldValueInvalid",
                        f'Invalid value: "{schedule}": cannot use TZ or CRON_TZ in schedule, use timeZone field instead'))
        else:
            try:
                parse_schedule(schedule)
            except ScheduleError as e:
                out.append(("spec.schedule", "FieldValueInvalid", f'Invalid value: "{schedule}": {e}'))
    zone = spec.get("timeZone")
    if isinstance(zone, str) and _zone(zone) is None:
        out.append(("spec.timeZone", "FieldValueInvalid", f'Invalid value: "{zone}": unknown time zone {zone}'))
    return out


def _zone(name: str | None) -> tzinfo | None:
    if not name or name in ("UTC", "Etc/UTC"):
        return UTC
    if name.strip() != name or name.startswith("/") or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# ---------------------------------------------------------------------------- the controller


def _finished(job: Obj) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return ""


def _ref(job: Obj) -> Obj:
    m = job["metadata"]
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m["name"], "namespace": m.get("namespace", ""),
            "resourceVersion": m.get("resourceVersion", ""), "uid": m["uid"]}


def sync(ctl: Controllers, cj: Obj, *, owner_ref: Callable[[Obj], Obj]) -> None:
    """Reconcile one CronJob at the store's current time (``syncCronJob``)."""
    store = ctl.store
    meta, spec = cj["metadata"], cj.get("spec") or {}
    ns, name = meta["namespace"], meta["name"]
    status_old = cj.get("status") or {}
    jobs = [o for r, o in store.dependents(meta["uid"]) if r == JOBS
            and any(ref.get("controller") and ref.get("uid") == meta["uid"] for ref in o["metadata"].get("ownerReferences") or [])]
    by_uid = {j["metadata"]["uid"]: j for j in jobs}
    listed = {str(ref.get("uid")): ref for ref in status_old.get("active") or []}
    active: list[Obj] = []
    last_success = status_old.get("lastSuccessfulTime")
    for ref in status_old.get("active") or []:
        if ref.get("uid") not in by_uid:
            ctl._event(cj, "MissingJob", f"Active job went missing: {ref.get('name')}", component="cronjob-controller")
    for job in jobs:
        state = _finished(job)
        if not state:
            # a Job of ours it did not start (``kubectl create job --from``) is not adopted
            if job["metadata"]["uid"] in listed:
                active.append(dict(listed[job["metadata"]["uid"]]))
            continue
        if job["metadata"]["uid"] in listed:
            ctl._event(cj, "SawCompletedJob", f"Saw completed job: {job['metadata']['name']}, condition: {state}",
                       component="cronjob-controller")
        if state == "Complete":
            done = (job.get("status") or {}).get("completionTime")
            if done and (not last_success or parse_rfc3339(done) > parse_rfc3339(last_success)):
                last_success = done
    now_ts = store.clock()
    status: Obj = dict(status_old)
    if active:
        status["active"] = active
    else:
        status.pop("active", None)
    if last_success:
        status["lastSuccessfulTime"] = last_success
    zone = _zone(spec.get("timeZone"))
    try:
        schedule = parse_schedule(str(spec.get("schedule", "")))
    except ScheduleError:
        schedule = None
    next_at: float | None = None
    if schedule is not None and zone is not None and not meta.get("deletionTimestamp"):
        now = datetime.fromtimestamp(now_ts, zone)
        earliest_ts = parse_rfc3339(status_old.get("lastScheduleTime") or meta["creationTimestamp"])
        deadline = spec.get("startingDeadlineSeconds")
        if isinstance(deadline, int) and now_ts - deadline > earliest_ts:
            earliest_ts = now_ts - deadline
        most_recent: datetime | None = None
        t = schedule.next(datetime.fromtimestamp(earliest_ts, zone))
        missed = 0
        while t is not None and t <= now:
            most_recent, missed = t, missed + 1
            if missed > 100:
                # a long outage: jump to the newest time, as upstream's shortcut does
                t = _latest_at_or_before(schedule, now, after=t)
                most_recent = t or most_recent
                break
            t = schedule.next(t)
        nxt = schedule.next(now)
        next_at = nxt.timestamp() if nxt is not None else None
        if most_recent is not None and not spec.get("suspend"):
            _start(ctl, cj, most_recent, active, status, owner_ref=owner_ref)
    _prune(ctl, cj, jobs, spec)
    if status != status_old:
        ctl._write_status(CRONJOBS, cj, status)
    if next_at is not None and not spec.get("suspend"):
        delay = min(max(next_at - now_ts, 0.0), MAX_WAIT)
        ctl.schedule(("cronjob-next", ns, name), delay, lambda: ctl.sync(CRONJOBS, ns, name))


def _latest_at_or_before(schedule: Schedule, now: datetime, *, after: datetime) -> datetime | None:
    t = now.replace(second=0, microsecond=0)
    while t > after:
        if schedule.next(t - timedelta(minutes=1)) == t:
            return t
        t -= timedelta(minutes=1)
    return None


def _start(ctl: Controllers, cj: Obj, scheduled: datetime, active: list[Obj], status: Obj, *,
           owner_ref: Callable[[Obj], Obj]) -> None:
    store = ctl.store
    meta, spec = cj["metadata"], cj.get("spec") or {}
    ns = meta["namespace"]
    deadline = spec.get("startingDeadlineSeconds")
    scheduled_ts = scheduled.timestamp()
    if isinstance(deadline, int) and scheduled_ts + deadline < store.clock():
        ctl._event(cj, "MissSchedule", f"Missed scheduled time to start a job: {rfc3339(scheduled_ts)}",
                   component="cronjob-controller", type_="Warning")
        return
    policy = spec.get("concurrencyPolicy") or "Allow"
    if policy == "Forbid" and active:
        ctl._event(cj, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid",
                   component="cronjob-controller")
        return
    if policy == "Replace":
        for ref in list(active):
            kind = ctl._kind(JOBS)
            try:
                store.delete(kind, ns, ref["name"], propagation="Background")
            except errors.NotFound:
                pass
            ctl._event(cj, "SuccessfulDelete", f"Deleted job {ref['name']}", component="cronjob-controller")
            active.remove(ref)
    template = spec.get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    name = f"{meta['name']}-{int(scheduled_ts) // 60}"
    job: Obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": name, "namespace": ns,
        "labels": dict(tmeta.get("labels") or {}),
        "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED_ANNOTATION: _go_rfc3339(scheduled)},
        "ownerReferences": [owner_ref(cj)]},
        "spec": deep_copy(template.get("spec") or {})}
    if not job["metadata"]["labels"]:
        del job["metadata"]["labels"]
    try:
        created = store.create(job, kind=ctl._kind(JOBS), copy_result=False)
    except errors.AlreadyExists:
        existing = store.raw(JOBS, ns, name)
        if existing is None or _finished(existing):
            status["lastScheduleTime"] = rfc3339(scheduled_ts)
            return
        created = existing
    else:
        ctl._event(cj, "SuccessfulCreate", f"Created job {name}", component="cronjob-controller")
    if all(a["uid"] != created["metadata"]["uid"] for a in active):
        active.append(_ref(created))
    status["active"] = active
    status["lastScheduleTime"] = rfc3339(scheduled_ts)


def _go_rfc3339(t: datetime) -> str:
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _prune(ctl: Controllers, cj: Obj, jobs: list[Obj], spec: Obj) -> None:
    """The history limits: the oldest finished Jobs beyond them are deleted."""
    for state, key, default in (("Complete", "successfulJobsHistoryLimit", 3), ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(key)
        limit = default if limit is None else int(limit)
        done = [j for j in jobs if _finished(j) == state and not j["metadata"].get("deletionTimestamp")]
        done.sort(key=lambda j: ((j.get("status") or {}).get("startTime") or j["metadata"]["creationTimestamp"],
                                 j["metadata"]["name"]))
        for job in done[:max(0, len(done) - limit)]:
            try:
                ctl.store.delete(ctl._kind(JOBS), job["metadata"]["namespace"], job["metadata"]["name"],
                                 propagation="Background")
            except errors.NotFound:
                continue
            ctl._event(cj, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}", component="cronjob-controller")
