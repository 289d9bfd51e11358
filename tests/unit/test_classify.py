"""Classification of local outcomes, first error lines, smart-retry parking."""

from __future__ import annotations

import signal

from batchdrain.classify import (
    classify_process_exit,
    first_error_line,
    normalise_error_line,
    park_reason,
    with_error_line,
)
from batchdrain.domain import AttemptHistoryItem, FailureClass

TRACEBACK = """starting
[batchdrain] ERROR not this one, it is the controller's header
Traceback (most recent call last):
  File "job.py", line 3, in <module>
    main()
  File "job.py", line 2, in main
    raise KeyError('customer 42')
KeyError: 'customer 42'
"""


def test_traceback_exception_line_wins():
    assert first_error_line(TRACEBACK) == "KeyError: 'customer 42'"


def test_first_error_like_line_without_traceback():
    assert first_error_line("ok\nwarming up\nfatal: repository not found\nerror: later") == (
        "fatal: repository not found"
    )
    assert first_error_line("all good\nnothing to see") is None


def test_error_line_is_clipped():
    line = first_error_line("error: " + "x" * 1000)
    assert line is not None and len(line) == 300


def test_normalise_strips_volatile_parts():
    a = normalise_error_line("Timeout after 30.5s talking to 10.0.0.7 for job 'abc' id 3f2a9c1b7d4e5f60")
    b = normalise_error_line("Timeout after 12s talking to 10.0.0.9 for job 'xyz' id 0a1b2c3d4e5f6a7b")
    assert a == b
    assert normalise_error_line("ValueError: x") != normalise_error_line("KeyError: x")


def h(cls, code=1, line="ValueError: bad row 7"):
    return AttemptHistoryItem(cls, code, line)


def test_parks_after_identical_non_transient_failures():
    history = [h(FailureClass.EXIT_CODE, line=f"ValueError: bad row {n}") for n in (9, 8, 7)]
    reason = park_reason(history, park_after=3)
    assert reason is not None and "exit_code" in reason and "exit code 1" in reason


def test_no_parking_when_too_few_different_or_transient():
    same = h(FailureClass.EXIT_CODE)
    assert park_reason([same, same], park_after=3) is None
    assert park_reason([same, same, h(FailureClass.EXIT_CODE, code=2)], park_after=3) is None
    assert park_reason([same, same, h(FailureClass.EXIT_CODE, line="KeyError: x")], park_after=3) is None
    evicted = h(FailureClass.EVICTED, code=None, line=None)
    assert park_reason([evicted, evicted, evicted], park_after=3) is None


def test_repeated_admission_refusals_park_the_phase():
    # Not transient: the namespace's quota or LimitRange refuses the same pod every time.
    refused = h(FailureClass.ADMISSION_REFUSED, code=None, line=None)
    reason = park_reason([refused, refused, refused], park_after=3)
    assert reason is not None and "admission_refused" in reason


def test_process_exit_classes():
    assert classify_process_exit(0, timed_out=False, timeout_seconds=5, interrupted=False,
                                 launch_error=None, error_line=None)[0] is FailureClass.SUCCEEDED
    cls, msg, code, _ = classify_process_exit(3, timed_out=False, timeout_seconds=5, interrupted=False,
                                              launch_error=None, error_line="error: boom")
    assert (cls, code) == (FailureClass.EXIT_CODE, 3) and msg == "exit code 3: error: boom"
    cls, msg, code, _ = classify_process_exit(-signal.SIGTERM, timed_out=True, timeout_seconds=2,
                                              interrupted=False, launch_error=None, error_line=None)
    assert cls is FailureClass.DEADLINE_EXCEEDED and code == 143 and "2s" in msg and "SIGTERM" in msg
    cls, msg, code, why = classify_process_exit(None, timed_out=False, timeout_seconds=2, interrupted=False,
                                                launch_error="No such file: 'x'", error_line=None)
    assert cls is FailureClass.LAUNCH_ERROR and code is None and why
    cls, *_ = classify_process_exit(-9, timed_out=False, timeout_seconds=2, interrupted=True,
                                    launch_error=None, error_line=None)
    assert cls is FailureClass.CONTROLLER_INTERRUPTED
    cls, msg, code, _ = classify_process_exit(-signal.SIGSEGV, timed_out=False, timeout_seconds=2,
                                              interrupted=False, launch_error=None, error_line=None)
    assert cls is FailureClass.EXIT_CODE and code == 139 and "SIGSEGV" in msg


def test_no_class_message_says_unknown_error():
    for rc in (None, 0, 1, -9, -15, 255):
        for flags in ((False, False), (True, False), (False, True)):
            cls, msg, _, _ = classify_process_exit(rc, timed_out=flags[0], timeout_seconds=1,
                                                   interrupted=flags[1], launch_error=None, error_line=None)
            assert "unknown" not in msg.lower() and cls in FailureClass


def test_the_error_line_is_added_once() -> None:
    said = "exit code 1 (Error): ValueError: x"
    assert with_error_line(said, "ValueError: x") == said
    assert with_error_line("exit code 1 (Error)", "ValueError: x") == "exit code 1 (Error): ValueError: x"
    assert with_error_line("exit code 1 (Error)", None) == "exit code 1 (Error)"
    long = "error: " + "x" * 400
    clipped = first_error_line(long)
    assert clipped is not None and clipped.endswith("…")
    assert with_error_line(f"exit code 1 (Error): {long}", clipped) == f"exit code 1 (Error): {long}"
