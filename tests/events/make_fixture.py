"""Write ``fixtures/catalogue-v1.db``: a small log holding one event of every type of the
catalogue as it was when the file was made, plus ``catalogue-v1.json``, the events as
plain data. The files are checked in and never regenerated: they are what an *older*
catalogue wrote, and ``test_event_fixture.py`` proves today's code still reads them.

For a new schema version, add a new pair (``catalogue-v2.*``) next to the old ones.

    .venv/bin/python tests/events/make_fixture.py
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import typing
from pathlib import Path

from events import codec
from events.log import EventLog
from events.types import CATALOGUE, SCHEMA_VERSION, ClusterName, Event

HERE = Path(__file__).parent / "fixtures"


def sample(cls: type[Event], n: int) -> Event:
    """An instance of ``cls`` with every field set to a non-default, recognisable value."""
    values: dict[str, typing.Any] = {
        "cluster": ClusterName(("master", "remote-eu", "remote-us")[n % 3]),
        "key": f"{cls.__name__}/istio-system/thing-{n}",
        "time": 1_700_000_000.5 + n,
    }
    hints = typing.get_type_hints(cls)
    for name in cls.__struct_fields__:
        if name in values:
            continue
        hint = hints[name]
        origin = typing.get_origin(hint)
        if hint is str:
            values[name] = f"{name}-{n}"
        elif hint is float:
            values[name] = n + 0.25
        elif hint is int:
            values[name] = n + 1
        elif hint is bool:
            values[name] = True
        elif origin is tuple:
            values[name] = (f"{name}-a", f"{name}-b")
        elif origin is dict and typing.get_args(hint)[1] is int:
            values[name] = {"http2": 80, "https": 443}
        elif origin is dict and typing.get_args(hint)[1] is str:
            values[name] = {"istio-injection": "enabled"}
        else:
            values[name] = {"version": "1.2.5", "mtls": True, "gateways": {"enabled": True}}
    return cls(**values)


async def main() -> None:
    HERE.mkdir(exist_ok=True)
    db = HERE / f"catalogue-v{SCHEMA_VERSION}.db"
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        p.unlink(missing_ok=True)
    events = [sample(cls, n) for n, cls in enumerate(CATALOGUE)]
    async with await EventLog.open(db) as log:
        await log.append(events)
        await log.save_snapshot("fixture", len(events), b"opaque snapshot bytes")
    # One self-contained, compact file: no WAL beside it, small pages.
    with sqlite3.connect(db) as raw:
        raw.execute("PRAGMA journal_mode = DELETE")
        raw.execute("PRAGMA page_size = 1024")
        raw.execute("VACUUM")
    raw.close()
    expected = [codec.to_builtins(e) for e in events]
    (HERE / f"catalogue-v{SCHEMA_VERSION}.json").write_text(
        json.dumps(expected, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {db} ({db.stat().st_size} bytes, {len(events)} events)")


if __name__ == "__main__":
    asyncio.run(main())
