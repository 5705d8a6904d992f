"""Cron schedules as robfig/cron's ``ParseStandard`` reads them (what the CronJob
controller evaluates and the API server validates with)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from federationd.sim.cronjobs import ScheduleError, parse_schedule


def _next(spec: str, after: datetime, n: int = 1) -> list[datetime]:
    s, out = parse_schedule(spec), []
    t: datetime | None = after
    for _ in range(n):
        assert t is not None
        t = s.next(t)
        assert t is not None
        out.append(t)
    return out


def test_ranges_steps_names_and_lists() -> None:
    sat = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)  # a Saturday
    assert [t.strftime("%a %H:%M") for t in _next("*/20 9-10 * * MON-FRI", sat, 4)] == [
        "Mon 09:00", "Mon 09:20", "Mon 09:40", "Mon 10:00"]
    assert [t.day for t in _next("0 0 1,15 * *", datetime(2026, 1, 1, tzinfo=UTC), 3)] == [15, 1, 15]
    assert _next("30 4 * JAN *", datetime(2026, 2, 1, tzinfo=UTC)) == [datetime(2027, 1, 1, 4, 30, tzinfo=UTC)]
    # "N/step" runs from N to the maximum
    assert [t.minute for t in _next("50/5 * * * *", datetime(2026, 1, 1, 0, 0, tzinfo=UTC), 3)] == [50, 55, 50]


def test_day_of_month_or_day_of_week_unless_one_is_a_star() -> None:
    # both restricted: either matches (the 13th, or any Friday)
    assert _next("0 0 13 * 5", datetime(2026, 1, 1, tzinfo=UTC)) == [datetime(2026, 1, 2, tzinfo=UTC)]
    # one is "*": both must match
    assert _next("0 0 * * 5", datetime(2026, 1, 3, tzinfo=UTC)) == [datetime(2026, 1, 9, tzinfo=UTC)]
    assert _next("0 0 29 2 *", datetime(2026, 1, 1, tzinfo=UTC)) == [datetime(2028, 2, 29, tzinfo=UTC)]


def test_descriptors_and_every() -> None:
    at = datetime(2026, 3, 4, 10, 30, 5, tzinfo=UTC)
    assert _next("@hourly", at) == [datetime(2026, 3, 4, 11, 0, tzinfo=UTC)]
    assert _next("@daily", at) == [datetime(2026, 3, 5, tzinfo=UTC)]
    assert _next("@weekly", at) == [datetime(2026, 3, 8, tzinfo=UTC)]  # Sunday
    assert _next("@yearly", at) == [datetime(2027, 1, 1, tzinfo=UTC)]
    assert _next("@every 1h30m", at) == [datetime(2026, 3, 4, 12, 0, 5, tzinfo=UTC)]


def test_time_zones_are_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    t = _next("0 9 * * *", datetime(2026, 7, 1, 12, tzinfo=berlin))[0]
    assert t == datetime(2026, 7, 2, 9, tzinfo=berlin) and t.astimezone(UTC).hour == 7


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty spec string"),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("1/2/3 * * * *", "too many slashes: 1/2/3"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
])
def test_errors_are_robfigs(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError) as e:
        parse_schedule(spec)
    assert str(e.value) == message
