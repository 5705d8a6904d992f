"""Settings: flags, environment, defaults, refusals."""

from __future__ import annotations

import re

import pytest

from federationd import config
from federationd.actuators.converge import redact


def test_defaults_flags_and_environment() -> None:
    s = config.load([], env={})
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (15.0, 10.0, 2.0)
    assert s.http_host == "127.0.0.1" and not s.leader_elect
    s = config.load(["--log", "/x.db", "--leader-elect", "--snapshot-every", "7"], env={"FEDERATIOND_LOG": "/env.db", "FEDERATIOND_HTTP_PORT": "9999"})
    assert s.log == "/x.db"  # a flag wins over the environment
    assert s.http_port == 9999 and s.leader_elect and s.snapshot_every == 7
    assert config.load([], env={"FEDERATIOND_LEADER_ELECT": "true"}).leader_elect
    assert s.http2 and not config.load(["--no-http2"], env={}).http2
    assert not config.load([], env={"FEDERATIOND_HTTP2": "false"}).http2


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--snapshot-every", "0"], {}, "--snapshot-every"),
        (["--leader-elect", "--lease-duration", "5", "--renew-deadline", "6"], {}, "lease timings"),
        (["--synchronous", "OFF"], {}, "--synchronous"),
        ([], {"FEDERATIOND_HTTP_PORT": "eighty"}, "FEDERATIOND_HTTP_PORT"),
        (["--resync-period", "0"], {}, "--resync-period"),
        (["--debug-fold-delay", "-1"], {}, "--debug-fold-delay"),
        # the leader's own rule (renew > 1.2 * retry), refused at start, not later
        (["--leader-elect", "--renew-deadline", "10", "--retry-period", "9"], {}, r"1\.2 \* --retry-period"),
        (["--leader-elect", "--retry-period", "0"], {}, "lease timings"),
    ],
)
def test_unusable_values_are_refused_with_the_flag_named(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(argv, env=env)


def test_the_run_command_reports_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from federationd import daemon

    assert daemon.main(["run", "--snapshot-every", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--snapshot-every" in err


def test_errors_are_redacted() -> None:
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ"
    out = redact(f"ApiForbidden: denied for bearer {token}")
    assert token not in out and "<redacted>" in out and out.startswith("ApiForbidden")
    assert len(redact("x" * 5000)) <= 500


def test_the_leaders_rule_is_refused_at_start_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    from federationd import daemon

    assert daemon.main(["run", "--log", "/nonexistent/x.db", "--leader-elect", "--renew-deadline", "10", "--retry-period", "9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lease timings" in err and "Traceback" not in err


def test_help_names_each_default_once() -> None:
    text = " ".join(config.parser().format_help().split())
    assert "(default: '')" not in text
    assert re.search(r"\(default:[^)]*\) \(default:", text) is None, text
    assert "(default: 15.0)" in text  # --lease-duration
