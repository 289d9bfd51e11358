"""Declared dependencies (issue 18.4) on a real SQLite file and a real Postgres.

``needs`` within a run: a dependent runs only once all its needs are COMPLETE (in the
same session, page after page); a need parked or failed for good blocks its dependents
with that reason in ``--dry-run``; unknown needs and cycles are refused at import with
one line, exit 2, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from batchdrain.domain import PhaseState
from tests.integration.helpers import attempts, cli, phases


def _import(capsys, workdir: Path, url: str, rows: list[dict], name: str = "backlog.yaml") -> tuple[int, str]:
    path = workdir / name
    path.write_text(yaml.safe_dump(rows), encoding="utf-8")
    code, _, err = cli(capsys, "import", str(path), "--database-url", url)
    return code, err


def _ok(phase_id: str, **extra) -> dict:
    return {"run_id": "etl", "phase_id": phase_id, "command": ["python3", "-c", "pass"], **extra}


def test_dependents_run_after_their_needs_complete_in_one_session(database_url, workdir, capsys):
    rows = [_ok("load", needs=["transform"]), _ok("transform", needs=["extract"]), _ok("extract"),
            _ok("report", needs=["load", "extract"]), _ok("side")]
    code, err = _import(capsys, workdir, database_url, rows)
    assert code == 0, err
    code, out, _ = cli(capsys, "drain", "--database-url", database_url, "--dry-run")
    assert "Would run 2 phase(s)" in out and "waiting for needs 'transform' (queued)" in out
    code, _, err = cli(capsys, "drain", "--database-url", database_url, "--executor", "local", "--quiet",
                       "--parallelism", "4")
    assert code == 0, err
    done = {a.phase_id: a for a in attempts(database_url)}
    assert set(done) == {"extract", "transform", "load", "report", "side"}
    for phase_id, needs in {"transform": ["extract"], "load": ["transform"], "report": ["load", "extract"]}.items():
        for need in needs:
            assert done[need].finished_at <= done[phase_id].created_at, (phase_id, need)
    assert len({a.session_id for a in done.values()}) == 1
    assert all(p.state is PhaseState.COMPLETE for p in phases(database_url).values())


def test_a_need_parked_blocks_its_dependents_and_a_failed_root_is_retried(database_url, workdir, capsys,
                                                                           monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    fail = ["python3", "-c", "import sys; print('ValueError: broken', file=sys.stderr); sys.exit(2)"]
    rows = [{"run_id": "etl", "phase_id": "extract", "command": fail}, _ok("transform", needs=["extract"])]
    assert _import(capsys, workdir, database_url, rows)[0] == 0
    common = ["--database-url", database_url, "--executor", "local", "--quiet", "--retry-delay-seconds", "0"]
    for _ in range(3):  # the root is retried although its run has a queued (dependent) phase
        assert cli(capsys, "drain", *common)[0] == 0
    assert [a.phase_id for a in attempts(database_url)] == ["extract"] * 3
    assert phases(database_url)[("etl", "extract")].state is PhaseState.SKIPPED
    code, out, _ = cli(capsys, "drain", "--database-url", database_url, "--dry-run")
    assert code == 0 and "Would run 0 phase(s)" in out
    assert "blocked: needs 'extract', parked: last 3 attempts failed the same way" in out


def test_unknown_needs_and_cycles_are_refused_with_one_line_and_nothing_written(database_url, workdir, capsys):
    assert _import(capsys, workdir, database_url, [_ok("old")], "first.yaml")[0] == 0
    cases = {
        "unknown.yaml": ([_ok("a", needs=["old", "nope"]), _ok("b")],
                         "unknown need(s), no such phase in the run: phase 'a' of run 'etl' needs 'nope'"),
        "other-run.yaml": ([{**_ok("a"), "run_id": "other", "needs": ["old"]}],
                           "phase 'a' of run 'other' needs 'old'"),
        "cycle.yaml": ([_ok("a", needs=["c"]), _ok("b", needs=["a", "old"]), _ok("c", needs=["b"])],
                       "run 'etl': dependency cycle 'a' -> 'c' -> 'b' -> 'a'"),
        "self.yaml": ([_ok("a", needs=["a"])], "dependency cycle 'a' -> 'a'"),
        "not-a-list.yaml": ([_ok("a", needs="old")], "row 1: needs must be a list of phase ids"),
    }
    for name, (rows, words) in cases.items():
        code, err = _import(capsys, workdir, database_url, rows, name)
        assert code == 2, (name, err)
        assert words in err and err.count("\n") == 1 and name in err, (name, err)
    assert set(phases(database_url)) == {("etl", "old")}
    code, _, err = cli(capsys, "enqueue", "--database-url", database_url, "--run-id", "etl", "--phase-id", "new",
                       "--needs", "ghost", "--", "true")
    assert code == 2 and "needs 'ghost'" in err
    code, _, err = cli(capsys, "enqueue", "--database-url", database_url, "--run-id", "etl", "--phase-id", "new",
                       "--needs", "old", "--", "true")
    assert code == 0, err
