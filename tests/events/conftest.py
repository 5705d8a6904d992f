"""Fixtures of the event-log tests: a fresh log file per test, always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.log import EventLog


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
async def log(log_path: Path) -> AsyncIterator[EventLog]:
    opened = await EventLog.open(log_path)
    try:
        yield opened
    finally:
        await opened.close()
