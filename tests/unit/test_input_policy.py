"""The pure policies behind the bad-input table: values as written, phase limits, bounds,
resource capacity and exhaustion, unknown variables."""

from __future__ import annotations

import errno

import pytest

from batchdrain import phase_limits
from batchdrain.bounds import MAX_SECONDS, seconds_problem
from batchdrain.domain import BadInput, PhaseSpec
from batchdrain.executors.resources import Limits, capacity_problem, exhausted
from batchdrain.importing.values import Written, clean_row, joined
from batchdrain.phase_limits import MAX_ARG_STRLEN, phase_problem, text_problem
from batchdrain.settings import unknown_env


def test_written_scalars_are_their_text_and_numbers_are_read_from_it():
    row = clean_row({"run_id": Written("007", "int"), "phase_id": "p", "image": Written("~", "null"),
                     "command": ["x", Written("1:30", "int")], "env": {Written("on", "bool"): Written("", "null")},
                     "timeout": Written("1e3", "float")})
    assert row == {"run_id": "007", "phase_id": "p", "command": ["x", "1:30"], "env": {"on": ""},
                   "timeout": 1000.0}
    assert type(row["run_id"]) is str
    assert [type(arg) for arg in row["command"]] == [str, str]
    # plain text is taken as it is; escaped pairs are still joined in every text field
    assert clean_row({"run_id": "r\ud83d\ude00", "command": ["x", "\ud83d\ude00"], "\ud83d\ude00": "v"}) == \
        {"run_id": "r😀", "command": ["x", "😀"], "😀": "v"}


@pytest.mark.parametrize("text", ["0x1F", "1:30", "010", ".inf", "1_000", "+.5e"])
def test_number_fields_take_plain_decimals_only(text):
    with pytest.raises(BadInput, match="not a plain decimal number"):
        clean_row({"timeout": Written(text, "int")})


@pytest.mark.parametrize(("value", "words"), [(True, "got true"), (None, "got null"), ([1], "got list")])
def test_text_fields_refuse_values_that_are_not_text(value, words):
    with pytest.raises(BadInput, match=f"env A must be text, {words}"):
        clean_row({"env": {"A": value}})


def test_surrogate_pairs_are_joined_and_lone_halves_kept_for_the_check():
    assert joined("\ud83d\ude00 \ud83d") == "😀 \ud83d"
    assert text_problem("x", "a\ud83d") == "x is not valid UTF-8 text: lone surrogate \\ud83d at character 2"
    assert text_problem("x", "a\x00") == "x contains a NUL byte (at character 2)"
    assert text_problem("x", "é😀") is None


def _spec(**fields: object) -> PhaseSpec:
    return PhaseSpec.from_json({"command": ["x"], **fields})


def test_phase_limits_in_the_order_documented():
    big = 2 << 20
    assert phase_problem("", "p", spec=_spec(), arg_max=big) == "run id is empty"
    assert phase_problem("r", "p" * 256, spec=_spec(), arg_max=big) == "phase id is 256 chars, at most 255"
    assert phase_problem("r", "p", spec=_spec(command=["a", "b\x00"]), arg_max=big) == \
        "command argument 2 contains a NUL byte (at character 2)"
    one_too_many = "a" * MAX_ARG_STRLEN
    assert "at most 131071 (Linux MAX_ARG_STRLEN)" in str(phase_problem("r", "p", spec=_spec(command=[one_too_many]),
                                                                       arg_max=big))
    assert phase_problem("r", "p", spec=_spec(command=["a" * (MAX_ARG_STRLEN - 1)]), arg_max=big) is None
    assert "this host's ARG_MAX 131072" in str(phase_problem("r", "p", spec=_spec(command=["a" * 70_000]),
                                                             arg_max=128 << 10))


def _every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phase_limits, "_plainly_fits", lambda *_args, **_kwargs: False)


@pytest.mark.parametrize("arg_max", [128 << 10, 2 << 20])
def test_the_plain_row_shortcut_says_what_every_check_says_at_each_size_bound(arg_max, monkeypatch):
    """Sizes swept across each bound the shortcut sums for (one argument; many arguments
    and environment entries against ARG_MAX): wherever the checks find a problem, the
    shortcut must not have said the phase fits."""
    budget = min(MAX_ARG_STRLEN - 1, arg_max - phase_limits.ENV_HEADROOM)
    specs = []
    for size in range(budget - 48, budget + 8):
        specs.append(_spec(command=["a" * size]))
        specs.append(_spec(command=["a"] * 3 + ["b" * (size - 40)], env={"K": "v" * 8, "L": "w"}))
    specs.append(_spec(command=["a" * (MAX_ARG_STRLEN - 1)]))
    specs.append(_spec(command=["a" * MAX_ARG_STRLEN]))
    shortcut = [phase_problem("r", "p", spec=spec, arg_max=arg_max) for spec in specs]
    _every_check(monkeypatch)
    full = [phase_problem("r", "p", spec=spec, arg_max=arg_max) for spec in specs]
    assert shortcut == full
    assert {None} < set(full)  # the sweep crossed a bound: some phases fit, some do not


def test_spec_checks_picked_by_a_rows_fields_report_the_first_problem_in_order():
    rows = [{"command": "x", "bogus": 1}, {"command": ["x"], "bogus": 1, "image": "UP"},
            {"command": ["x"], "bogus": 1}, {"command": ["x"], "env": {"A B": "1"}, "cpu": "lots"}]
    problems = []
    for row in rows * 2:  # the second time from the kept checks of each key set
        with pytest.raises(BadInput) as refused:
            PhaseSpec.from_json(row)
        problems.append(str(refused.value))
    assert problems == ["command must be a list of strings, not one string", "invalid image reference 'UP'",
                        "unknown field(s) bogus", "cpu 'lots' is not a Kubernetes quantity (e.g. 500m, 256Mi)"] * 2


def test_seconds_are_finite_positive_and_within_int64_nanoseconds():
    assert seconds_problem(MAX_SECONDS) is None
    assert "at most 9223372036" in str(seconds_problem(MAX_SECONDS + 1))
    assert "finite" in str(seconds_problem(float("nan")))
    assert "positive" in str(seconds_problem(0))
    assert seconds_problem(0, positive=False) is None
    assert "number of seconds" in str(seconds_problem(True))


def test_capacity_counts_this_process_a_reserve_and_each_attempt():
    limits = Limits(nofile=256, nproc=None, open_fds=10, threads=2, root=False)
    assert capacity_problem(22, executor="local", limits=limits) is None  # 10 + 64 + 22 * 8 = 250
    assert "needs about 258 open files" in str(capacity_problem(23, executor="local", limits=limits))
    processes = Limits(nofile=None, nproc=100, open_fds=10, threads=2, root=False)
    assert "RLIMIT_NPROC 100" in str(capacity_problem(21, executor="local", limits=processes))  # 2 + 16 + 84
    # the kernel does not apply the process limit to root
    as_root = Limits(nofile=None, nproc=100, open_fds=10, threads=2, root=True)
    assert capacity_problem(21, executor="local", limits=as_root) is None


def test_exhaustion_is_told_from_a_phase_failure():
    assert "RLIMIT_NOFILE" in str(exhausted(OSError(errno.EMFILE, "Too many open files")))
    assert "RLIMIT_NPROC" in str(exhausted(BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")))
    assert "RLIMIT_NPROC" in str(exhausted(RuntimeError("can't start new thread")))
    assert exhausted(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert exhausted(PermissionError(errno.EACCES, "Permission denied")) is None


def test_unknown_variables_are_named_with_the_closest_setting():
    assert unknown_env({"BATCHDRAIN_LEASE_SECOND": "1", "BATCHDRAIN_LEASE_SECONDS": "1", "HOME": "/",
                        "BATCHDRAIN_ATTEMPT": "1", "BATCHDRAIN_TEST_POSTGRES_URL": "x"}) == [
        "unknown environment variable BATCHDRAIN_LEASE_SECOND ignored (did you mean BATCHDRAIN_LEASE_SECONDS?)"]
