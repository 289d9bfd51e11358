"""Numbers in range (issue 16): every numeric setting and flag refuses ``inf``, ``nan`` and
values that overflow what they feed, naming the setting and its environment variable;
an unknown ``BATCHDRAIN_*`` variable is a warning naming the closest setting.
"""

from __future__ import annotations

import types
from typing import Union, get_args, get_origin

import pytest

from batchdrain.settings import Settings
from tests.integration.helpers import cli


def _kind(name: str) -> type | None:
    annotation = Settings.model_fields[name].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation if annotation in (int, float) else None


# The bounds as documented (README "Bad input"), written out: the test checks the code's.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_SECONDS = 9_223_372_036

NUMERIC = [name for name in Settings.model_fields if _kind(name) is not None]
# Past what each one feeds (bounds.py): seconds past int64 nanoseconds, counts past int32
# (or int64 for LIMIT), Kubernetes int32 fields, ports.
OVERFLOW = {"batch_size": INT64_MAX + 1, "metrics_port": 65536, "phase_termination_grace_seconds": 601,
            "job_create_rate": 1e-300}  # a wait of 1e300 s between two Jobs


def _overflow(name: str) -> str:
    if name in OVERFLOW:
        return str(OVERFLOW[name])
    return str(MAX_SECONDS + 1) if _kind(name) is float else str(INT32_MAX + 1)


def _fragment(name: str) -> str:
    return f"invalid setting {name} (--{name.replace('_', '-')} or BATCHDRAIN_{name.upper()})"


def _refused(capsys, workdir, name: str, args: list[str]) -> str:
    code, out, err = cli(capsys, "drain", "--database-url", f"sqlite:///{workdir / 'b.db'}", *args)
    assert code == 2, (name, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (workdir / "b.db").exists()  # refused before the database was opened
    return lines[0]


def test_every_numeric_setting_is_covered():
    assert len(NUMERIC) >= 17
    assert {"lease_seconds", "parallelism", "batch_size", "metrics_port", "job_ttl_seconds"} <= set(NUMERIC)


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "overflow"])
def test_a_numeric_setting_out_of_range_names_itself_and_its_env_var(workdir, capsys, monkeypatch, name, value):
    given = _overflow(name) if value == "overflow" else value
    env = f"BATCHDRAIN_{name.upper()}"
    monkeypatch.setenv(env, given)
    line = _refused(capsys, workdir, name, [])
    assert f"invalid setting {name} (--{name.replace('_', '-')} or {env})" in line, line


@pytest.mark.parametrize("name", [n for n in NUMERIC if _kind(n) is float])
@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "overflow"])
def test_a_float_flag_out_of_range_names_the_setting_and_its_env_var(workdir, capsys, name, value):
    given = _overflow(name) if value == "overflow" else value
    line = _refused(capsys, workdir, name, [f"--{name.replace('_', '-')}", given])
    assert f"invalid setting {name} (--{name.replace('_', '-')} or BATCHDRAIN_{name.upper()})" in line, line


@pytest.mark.parametrize("name", [n for n in NUMERIC if _kind(n) is int])
def test_an_int_flag_that_overflows_names_the_setting_and_its_env_var(workdir, capsys, name):
    line = _refused(capsys, workdir, name, [f"--{name.replace('_', '-')}", _overflow(name)])
    assert f"invalid setting {name} (--{name.replace('_', '-')} or BATCHDRAIN_{name.upper()})" in line, line
    assert "less than or equal to" in line


def test_the_largest_values_are_accepted(workdir, capsys):
    url = f"sqlite:///{workdir / 'b.db'}"
    code, _, err = cli(capsys, "drain", "--database-url", url, "--dry-run", "--lease-seconds", str(MAX_SECONDS),
                       "--max-attempts", str(INT32_MAX), "--batch-size", str(INT64_MAX),
                       "--job-ttl-seconds", str(INT32_MAX), "--metrics-port", "65535")
    assert code == 0, err


@pytest.mark.parametrize(("args", "fragment"), [
    (["enqueue", "--run-id", "r", "--phase-id", "p", "--timeout", "inf", "--", "true"],
     "timeout must be a finite number of seconds, got inf"),
    (["enqueue", "--run-id", "r", "--phase-id", "p", "--timeout", "nan", "--", "true"],
     "timeout must be a finite number of seconds, got nan"),
    (["enqueue", "--run-id", "r", "--phase-id", "p", "--timeout", "1e300", "--", "true"],
     "timeout must be at most 9223372036 seconds (int64 nanoseconds)"),
    (["sessions", "watch", "s", "--interval", "nan"], "--interval must be a finite number of seconds"),
    (["sessions", "watch", "s", "--timeout", "inf"], "--timeout must be a finite number of seconds"),
    (["sessions", "list", "--limit", str(INT64_MAX + 1)], "--limit"),
])
def test_command_flags_refuse_infinite_and_overflowing_numbers(workdir, capsys, args, fragment):
    url = f"sqlite:///{workdir / 'b.db'}"
    code, out, err = cli(capsys, *args, "--database-url", url)
    assert code == 2, (out, err)
    assert fragment in err, err
    assert "Traceback" not in err
    assert not (workdir / "b.db").exists()


def test_an_import_file_timeout_past_int64_nanoseconds_is_refused(workdir, capsys):
    path = workdir / "t.json"
    path.write_text('[{"run_id": "r", "phase_id": "p", "command": ["x"], "timeout_seconds": 1e10}]',
                    encoding="utf-8")
    code, _, err = cli(capsys, "import", str(path), "--database-url", f"sqlite:///{workdir / 'b.db'}")
    assert code == 2, err
    assert "row 1: timeout must be at most 9223372036 seconds" in err


def test_an_unknown_batchdrain_variable_is_a_warning_naming_the_closest_setting(workdir, capsys, monkeypatch):
    monkeypatch.setenv("BATCHDRAIN_PARALELISM", "3")
    monkeypatch.setenv("BATCHDRAIN_ZZZ", "1")
    monkeypatch.setenv("BATCHDRAIN_PHASE_ID", "p")  # the identity a phase is given: not a setting, no warning
    code, out, err = cli(capsys, "runs", "--database-url", f"sqlite:///{workdir / 'b.db'}")
    assert code == 0, err
    assert "no runs yet" in out
    assert err.splitlines() == [
        "batchdrain: warning: unknown environment variable BATCHDRAIN_PARALELISM ignored "
        "(did you mean BATCHDRAIN_PARALLELISM?)",
        "batchdrain: warning: unknown environment variable BATCHDRAIN_ZZZ ignored "
        "(no setting has a name close to it)",
    ]
