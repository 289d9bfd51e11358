"""A real drain with the local executor on a real SQLite file and a real Postgres.

SPEC section 9 criteria 1-4 for the local executor: every attempt recorded with exit
code (or an explained null), durations, durable logs with the identity header; no
"Unknown error"; safe selection with before/after counts; identity proven, and the
database password never stored or printed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import psycopg
import yaml

from batchdrain.domain import FailureClass, PhaseState
from tests.integration.helpers import attempts, cli, peak_rss_kib, phases

SECRET = "hunter2-very-secret"


def write_backlog(path: Path, rows: list[dict]) -> Path:
    path.write_text(yaml.safe_dump(rows, allow_unicode=True), encoding="utf-8")
    return path


ENV_PROBE = ("import hashlib, os, sys; "
             "print('db-sha', hashlib.sha256(os.environ['DATABASE_URL'].encode()).hexdigest()); "
             "print('ids', os.environ['BATCHDRAIN_RUN_ID'], os.environ['BATCHDRAIN_PHASE_ID'], "
             "os.environ['BATCHDRAIN_SESSION_ID'], os.environ['BATCHDRAIN_ATTEMPT'], "
             "os.environ['BATCHDRAIN_API_URL']); "
             "sys.exit(int(sys.argv[1]))")

MIXED = [
    {"run_id": "alpha", "phase_id": "ok-1", "command": ["python3", "-c", ENV_PROBE, "0"]},
    {"run_id": "alpha", "phase_id": "fails", "command": ["python3", "-c", ENV_PROBE, "4"]},
    {"run_id": "alpha", "phase_id": "traceback",
     "command": ["python3", "-c", "import json; json.loads('{oops')"]},
    {"run_id": "beta ünïcode / spaces", "phase_id": "ok 2 ☃", "command": ["python3", "-c", ENV_PROBE, "0"]},
    {"run_id": "beta ünïcode / spaces", "phase_id": "timeout", "timeout": 1,
     "command": ["python3", "-c", "import time; print('working', flush=True); time.sleep(20)"]},
    {"run_id": "beta ünïcode / spaces", "phase_id": "no-such-command", "command": ["no-such-binary-xyz"]},
]


def test_mixed_drain_records_every_attempt(database_url, workdir, capsys, api_url):
    phase_db = f"postgresql://app:{SECRET}@db.example:5432/app"
    backlog = write_backlog(workdir / "backlog.yaml", MIXED)
    common = ["--database-url", database_url]
    code, _, err = cli(capsys, "import", str(backlog), *common)
    assert code == 0, err
    code, out, err = cli(capsys, "drain", *common, "--parallelism", "3", "--phase-database-url", phase_db,
                         "--api-url", api_url, "--quiet", "--executor", "local")
    assert code == 0, err
    rows = attempts(database_url)
    assert len(rows) == len(MIXED)
    classes = {r.phase_id: r.failure_class for r in rows}
    assert classes == {"ok-1": "succeeded", "fails": "exit_code", "traceback": "exit_code",
                       "ok 2 ☃": "succeeded", "timeout": "deadline_exceeded",
                       "no-such-command": "launch_error"}
    session_id = rows[0].session_id
    for row in rows:
        # criterion 1: exit code or an explained null, durations, durable non-empty logs with the header
        assert row.exit_code is not None or row.exit_code_reason, row
        assert row.total_seconds is not None and row.total_seconds >= 0
        assert row.status == "finished" and row.message
        assert {p.stream for p in row.logs} == {"stdout", "stderr"}
        for pointer in row.logs:
            data = Path(pointer.url).read_bytes()
            assert data.startswith(b"[batchdrain] ===== ENVIRONMENT IDENTITY =====")
            assert pointer.size_bytes == len(data)
            assert pointer.sha256 == hashlib.sha256(data).hexdigest()
            assert f"[batchdrain] session: {session_id}".encode() in data
            assert SECRET.encode() not in data
        # criterion 2: never "Unknown error"
        assert "unknown error" not in (row.message or "").lower()
    by_phase = {r.phase_id: r for r in rows}
    assert by_phase["fails"].exit_code == 4
    assert by_phase["traceback"].first_error_line.startswith("json.decoder.JSONDecodeError")
    assert by_phase["no-such-command"].exit_code is None
    assert "no-such-binary-xyz" in by_phase["no-such-command"].message
    assert by_phase["timeout"].container_seconds < 15

    # criterion 4: what the phase saw is the controller's identity (phase-side evidence)
    expected_sha = hashlib.sha256(phase_db.encode()).hexdigest()
    for pid in ("ok-1", "fails", "ok 2 ☃"):
        row = by_phase[pid]
        stdout = Path(next(p.url for p in row.logs if p.stream == "stdout")).read_text("utf-8")
        assert f"db-sha {expected_sha}" in stdout
        assert f"ids {row.run_id} {pid} {session_id} {row.attempt} {api_url}" in stdout

    # the report: before/after counts, identity proof, no password anywhere
    code, report_json, _ = cli(capsys, "report", session_id, "--format", "json", *common)
    assert code == 0
    report = json.loads(report_json)
    assert report["schema"] == "batchdrain.report/v2"
    assert report["runs"]["alpha"] == {
        "before": {"queued": 3, "executing": 0, "complete": 0, "failed": 0, "skipped": 0},
        "after": {"queued": 0, "executing": 0, "complete": 1, "failed": 2, "skipped": 0},
    }
    assert report["identity_mismatches"] == []
    assert all(a["identity_check"] == "ok" for a in report["attempts"])
    assert report["leaks"] == []
    assert SECRET not in report_json and SECRET not in out and SECRET not in err
    code, md, _ = cli(capsys, "report", session_id, *common)
    assert "## Failure clusters" in md and SECRET not in md
    stored = Path(workdir / ".batchdrain/logs" / session_id / "session.json").read_text("utf-8")
    assert json.loads(stored)["session_id"] == session_id
    assert SECRET not in _dump_database(database_url)


def _dump_database(url: str) -> str:
    """Every value of every table, as text: the password must not be anywhere."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    chunks = []
    with psycopg.connect(url) as conn:
        for table in ("runs", "phases", "drain_sessions", "attempts"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                chunks.append(repr(row))
    return "\n".join(chunks)


def test_selection_safety_and_parking(database_url, workdir, capsys):
    # No retry backoff: the next session retries at once (tests/integration/test_retry_backoff.py has the wait).
    common = ["--database-url", database_url, "--quiet", "--executor", "local", "--retry-delay-seconds", "0"]
    fail = ["python3", "-c", "import sys; print('ValueError: same every time', file=sys.stderr); sys.exit(2)"]
    ok = ["python3", "-c", "print('fine')"]
    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "first", *common[:2], "--", *fail)[0] == 0
    # one session runs only "first" and it fails
    assert cli(capsys, "drain", *common)[0] == 0
    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "second", *common[:2], "--", *ok)[0] == 0
    # run r now has a queued phase: the failed one must not be retried
    code, out, _ = cli(capsys, "drain", *common, "--dry-run")
    assert code == 0 and "second" in out and "queued phase(s); failed phases wait" in out
    assert cli(capsys, "drain", *common)[0] == 0
    # "second" first; once its run had no queued phase left, the same session (planning again
    # after its page) retried "first"
    assert [(a.phase_id, a.attempt) for a in attempts(database_url)] == [("first", 1), ("second", 1), ("first", 2)]
    # retries go on, and after 3 identical failures the phase is parked
    assert cli(capsys, "drain", *common)[0] == 0
    state = phases(database_url)[("r", "first")]
    assert state.state is PhaseState.SKIPPED and "last 3 attempts failed the same way" in state.parked_reason
    assert cli(capsys, "drain", *common)[0] == 0
    assert len(attempts(database_url, phase_id="first")) == 3  # parked: not run again
    code, out, _ = cli(capsys, "retry", "--run-id", "r", *common[:2])
    assert code == 0 and "re-queued 1" in out
    assert cli(capsys, "drain", *common)[0] == 0
    assert [a.attempt for a in attempts(database_url, phase_id="first")] == [1, 2, 3, 4]
    assert phases(database_url)[("r", "first")].state is PhaseState.FAILED


def test_override_retries_failed_even_with_queued(database_url, workdir, capsys):
    common = ["--database-url", database_url, "--quiet", "--executor", "local", "--retry-delay-seconds", "0"]
    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "bad", *common[:2], "--", "false")[0] == 0
    assert cli(capsys, "drain", *common)[0] == 0
    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "new", *common[:2], "--", "true")[0] == 0
    assert cli(capsys, "drain", *common, "--no-skip-runs-with-queued")[0] == 0
    assert sorted((a.phase_id, a.attempt) for a in attempts(database_url)) == [
        ("bad", 1), ("bad", 2), ("new", 1)]


def test_huge_and_binary_output_is_stored_byte_exact(workdir, capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    # 50 MB of deterministic non-UTF-8 bytes on stdout, some on stderr too
    gen = ("import sys, hashlib; out = sys.stdout.buffer; h = hashlib.sha256()\n"
           "for i in range(800):\n"
           "    block = bytes((i * 7 + j) % 256 for j in range(256)) * 256\n"
           "    out.write(block); h.update(block)\n"
           "sys.stderr.buffer.write(b'\\xc3\\x28 invalid utf8 \\xff\\n')\n"
           "print(h.hexdigest(), file=sys.stderr)\n")
    assert cli(capsys, "enqueue", "--run-id", "big", "--phase-id", "p", "--database-url", url, "--",
               "python3", "-c", gen)[0] == 0
    big_rss = _controller_peak_rss_kib(tmp_path, url)
    assert cli(capsys, "enqueue", "--run-id", "small", "--phase-id", "p", "--database-url", url, "--",
               "python3", "-c", "print('tiny')")[0] == 0
    small_rss = _controller_peak_rss_kib(tmp_path, url)
    # memory stays flat: streaming 50 MB costs the controller far less than 50 MB
    assert big_rss - small_rss < 20 * 1024, (big_rss, small_rss)
    (row, _) = attempts(url)
    assert row.failure_class == FailureClass.SUCCEEDED
    stdout = next(p for p in row.logs if p.stream == "stdout")
    stderr = next(p for p in row.logs if p.stream == "stderr")
    err_bytes = Path(stderr.url).read_bytes()
    assert b"\xc3\x28 invalid utf8 \xff\n" in err_bytes
    expected_payload_sha = err_bytes.strip().splitlines()[-1].decode()
    data = Path(stdout.url).read_bytes()
    header_end = data.index(b"=====\n", data.index(b"IDENTITY =====") + 20) + len(b"=====\n")
    assert len(data) - header_end == 800 * 65536
    assert hashlib.sha256(data[header_end:]).hexdigest() == expected_payload_sha
    assert stdout.size_bytes == len(data)


def _controller_peak_rss_kib(cwd: Path, url: str) -> int:
    """Peak RSS of one controller process (its phase is a separate, reaped child)."""
    code, err, kib = peak_rss_kib([sys.executable, "-m", "batchdrain.cli", "drain", "--database-url", url,
                                   "--quiet", "--executor", "local"], cwd=cwd)
    assert code == 0, err
    return kib


def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, postgres_url):
    url = f"sqlite:///{workdir / 'x.db'}"
    code, _, err = cli(capsys, "drain", "--database-url", url, "--run-id", "nope", "--quiet")
    assert code == 2 and "unknown run id 'nope'" in err and len(err.strip().splitlines()) == 1

    code, _, err = cli(capsys, "runs", "--database-url", "not a url at all")
    assert code == 2 and "malformed database URL" in err
    code, _, err = cli(capsys, "runs", "--database-url", "postgresql://user:pw-123@[bad",
                       "--retry-attempts", "1")
    assert code == 2 and "pw-123" not in err and "user:***@" in err

    code, _, err = cli(capsys, "runs", "--database-url", "postgresql://user:pw-456@127.0.0.1:1/db",
                       "--retry-attempts", "1")
    assert code == 2 and "pw-456" not in err and "unavailable" in err

    code, _, err = cli(capsys, "runs", "--database-url", "mysql://x@y/z")
    assert code == 2 and "unsupported database" in err

    assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "p", "--database-url", url, "--", "true")[0] == 0
    code, _, err = cli(capsys, "enqueue", "--run-id", "r", "--phase-id", "p", "--database-url", url, "--", "true")
    assert code == 2 and "already in the backlog" in err

    rows = [{"run_id": "r2", "phase_id": "a", "command": ["true"]},
            {"run_id": "r2", "phase_id": "b"},
            {"run_id": "r2", "phase_id": "c", "command": ["true"]}]
    bad = write_backlog(workdir / "bad.yaml", rows)
    code, _, err = cli(capsys, "import", str(bad), "--database-url", url)
    assert code == 2 and "row 2: missing command" in err
    dup = write_backlog(workdir / "dup.json", [rows[0], rows[0]])
    code, _, err = cli(capsys, "import", str(dup), "--database-url", url)
    assert code == 2 and "row 2: duplicate of row 1" in err
    clash = write_backlog(workdir / "clash.yaml", [rows[0], {"run_id": "r", "phase_id": "p", "command": ["x"]}])
    code, _, err = cli(capsys, "import", str(clash), "--database-url", url)
    assert code == 2 and "row 2" in err
    assert set(phases(url)) == {("r", "p")}  # nothing of the bad files was imported

    code, _, err = cli(capsys, "drain", "--database-url", url, "--api-url", "http://127.0.0.1:9", "--quiet")
    assert code == 2 and "api url: http://127.0.0.1:9/health unreachable" in err
    assert attempts(url) == []  # preflight failed: no session, nothing ran
    code, _, err = cli(capsys, "drain", "--database-url", url, "--parallelism", "0")
    assert code == 2 and "parallelism" in err
    code, _, err = cli(capsys, "report", "batch-drain-nope", "--database-url", url)
    assert code == 2 and "unknown session" in err
    code, _, err = cli(capsys, "import", str(workdir / "missing.yaml"), "--database-url", url)
    assert code == 2 and "cannot read" in err
    # an unknown command or flag is usage: exit 2
    assert cli(capsys, "frobnicate")[0] == 2
    assert cli(capsys, "drain", "--no-such-flag")[0] == 2


def test_settings_come_from_env_and_flags_override(workdir, capsys, monkeypatch):
    url = f"sqlite:///{workdir / 'env.db'}"
    monkeypatch.setenv("BATCHDRAIN_DATABASE_URL", url)
    monkeypatch.setenv("BATCHDRAIN_BATCH_SIZE", "1")
    for i in range(3):
        assert cli(capsys, "enqueue", "--run-id", "r", "--phase-id", f"p{i}", "--", "true")[0] == 0
    code, out, _ = cli(capsys, "drain", "--dry-run")
    assert code == 0 and "Would run 1 phase(s)" in out
    code, out, _ = cli(capsys, "drain", "--dry-run", "--batch-size", "2")
    assert code == 0 and "Would run 2 phase(s)" in out


def test_phases_whose_ids_met_in_the_old_log_names_keep_their_own_logs(database_url, workdir, capsys):
    """Bug: ``<run>__<phase>`` named one file for ("a__b", "c") and ("a", "b__c"): one log
    overwrote the other and its recorded sha256 no longer matched the file."""
    long_id = "r" * 250 + "__end"
    rows = [{"run_id": run, "phase_id": phase, "command": ["python3", "-c", f"print({run + '|' + phase!r})"]}
            for run, phase in (("a__b", "c"), ("a", "b__c"), (long_id, "p"), (long_id[:-1], "p"))]
    backlog = write_backlog(workdir / "backlog.yaml", rows)
    assert cli(capsys, "import", str(backlog), "--database-url", database_url)[0] == 0
    code, _, err = cli(capsys, "drain", "--database-url", database_url, "--executor", "local", "--quiet")
    assert code == 0, err
    recorded = attempts(database_url)
    assert len(recorded) == 4
    urls = set()
    for row in recorded:
        stdout = next(p for p in row.logs if p.stream == "stdout")
        data = Path(stdout.url).read_bytes()
        assert hashlib.sha256(data).hexdigest() == stdout.sha256 and len(data) == stdout.size_bytes
        assert data.endswith(f"{row.run_id}|{row.phase_id}\n".encode())
        urls.add(stdout.url)
    assert len(urls) == 4


def test_a_dry_run_of_a_large_backlog_prints_the_first_rows_and_counts(database_url, workdir, capsys,
                                                                       monkeypatch):
    """--dry-run walks the whole backlog in pages and prints at most 200 rows per table."""
    import batchdrain.db.backlog as backlog_module

    monkeypatch.setattr(backlog_module, "STANDINGS_PAGE", 37)  # many pages, so that paging is what runs
    rows = [{"run_id": f"run-{i % 3}", "phase_id": f"p{i:04d}", "command": ["true"]} for i in range(450)]
    rows += [{"run_id": "other", "phase_id": "not-this-run", "command": ["true"]}]
    backlog = write_backlog(workdir / "big.yaml", rows)
    assert cli(capsys, "import", str(backlog), "--database-url", database_url)[0] == 0
    code, out, err = cli(capsys, "drain", "--database-url", database_url, "--dry-run", "--batch-size", "300",
                         "--run-id", "run-0", "--run-id", "run-1", "--run-id", "run-2")
    assert code == 0, err
    assert "Would run 300 phase(s)" in out and "... and 100 more (the first 200 shown)" in out
    assert "Skipped 150 phase(s)" in out and "... and 0 more" not in out
    assert "not-this-run" not in out
    listed = [line for line in out.splitlines() if " p0" in line]
    assert len(listed) == 200 + 150  # 200 selected rows, every one of the 150 skipped
    assert out.count("beyond --batch-size 300") == 150
    code, out, _ = cli(capsys, "drain", "--database-url", database_url, "--dry-run", "--batch-size", "40")
    assert code == 0 and "Would run 40 phase(s)" in out and "Skipped 411 phase(s)" in out
    assert "... and 211 more skipped; by reason:" in out and "411  beyond --batch-size 40" in out
