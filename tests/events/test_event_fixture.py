"""Schema evolution: a log written by an earlier catalogue (checked in, made once by
``make_fixture.py``) still opens, decodes and extends with today's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from events import codec
from events.log import EventLog
from events.types import SCHEMA_VERSION, ClusterName, NodeRemoved

FIXTURES = Path(__file__).parent / "fixtures"


def _fixtures() -> list[Path]:
    found = sorted(FIXTURES.glob("catalogue-v*.db"))
    assert found, f"no fixture log in {FIXTURES} (run tests/events/make_fixture.py once)"
    return found


async def test_fixture_logs_decode_with_todays_catalogue(tmp_path: Path) -> None:
    for fixture in _fixtures():
        version = int(fixture.stem.rsplit("-v", 1)[1])
        assert version <= SCHEMA_VERSION
        expected = json.loads(fixture.with_suffix(".json").read_text())
        copy = tmp_path / fixture.name  # opening switches the journal: never touch the original
        shutil.copy(fixture, copy)
        async with await EventLog.open(copy) as log:
            records = [r async for r in log.read()]
            assert [r.seq for r in records] == list(range(1, len(expected) + 1))
            # Fields added since carry defaults, which are omitted here, so old events
            # compare equal to what was written.
            assert [codec.to_builtins(r.event) for r in records] == expected
            assert {e["type"] for e in expected} <= set(log.catalogue)
            assert await log.load_snapshot("fixture") == (len(expected), b"opaque snapshot bytes")
            # And the old log goes on with today's events.
            new = NodeRemoved(cluster=ClusterName("master"), key="Node/n", time=1.0, node="n")
            assert await log.append(new) == len(expected) + 1


def test_fixture_covers_every_type_it_claims(tmp_path: Path) -> None:
    for fixture in _fixtures():
        expected = json.loads(fixture.with_suffix(".json").read_text())
        types = [e["type"] for e in expected]
        assert len(types) == len(set(types)) and len(types) >= 20
        assert set(types) <= codec.KNOWN_TAGS, "a tag was removed from the catalogue"
