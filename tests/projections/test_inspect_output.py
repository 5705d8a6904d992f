"""What the inspection commands print for a person: times as RFC 3339, and a clear
refusal of a range that does not fit the log."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .test_inspect import _run, _write


async def test_state_prints_rfc3339_times(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.db"
    await _write(path)
    code, out, _ = await _run(["state", "--log", str(path)], capsys)
    assert code == 0
    cr = yaml.safe_load(out)["istios"]["istio-system/istio"]
    assert cr["time"] == "1970-01-01T00:16:40Z"  # the event's time, 1000 s after the epoch


@pytest.mark.parametrize(
    ("frm", "to", "message"),
    [
        ("5000", "1", "--from 5000 must be >= 0 and <= --to 1"),
        ("1", "5000", "--to 5000 is past the log's last event"),
        ("-1", "2", "--from -1 must be >= 0"),
    ],
)
async def test_diff_refuses_a_range_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str], frm: str, to: str, message: str) -> None:
    path = tmp_path / "log.db"
    await _write(path)
    code, out, err = await _run(["diff", "--log", str(path), "--from", frm, "--to", to], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err
