"""`batchdrain import` of large files, streamed, on a real SQLite file and a real Postgres.

Each file spans many insert batches (5,000 rows each), so a bad or duplicate row found
late must roll back batches that were already inserted in the same transaction.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchdrain.db import Database
from batchdrain.domain import PhaseSpec, PhaseState
from tests.integration.helpers import cli, phases

RUNS = 50


def row(i: int) -> dict[str, object]:
    return {"run_id": f"run-{i % RUNS:02d}", "phase_id": f"p{i:07d}", "command": ["echo", f"{i}"],
            **({"timeout": 30, "env": {"N": str(i)}} if i % 1000 == 7 else {})}


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".json":
        path.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n", encoding="utf-8")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text("".join(f"- {json.dumps(r)}\n" for r in rows), encoding="utf-8")
    return path


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_100000_row_file_is_imported_whole(database_url, workdir, capsys):
    backlog = write(workdir / "big.json", [row(i) for i in range(100_000)])
    code, out, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 0, err
    assert "imported 100000 phases (50 new run(s))" in out
    db = Database(database_url)
    try:
        counts = db.run_counts()
        assert sorted(counts) == [f"run-{r:02d}" for r in range(RUNS)]
        assert {c.queued for c in counts.values()} == {2000}
        run_07 = {p.phase_id: p for p in db.phases(["run-07"])}
    finally:
        db.dispose()
    assert len(run_07) == 2000
    # every row's own spec, though an import serialises each distinct spec only once
    expected = {f"p{i:07d}": PhaseSpec.from_json(row(i)) for i in range(7, 100_000, RUNS)}
    assert {phase_id: phase.spec for phase_id, phase in run_07.items()} == expected
    first, late = run_07["p0000007"], run_07["p0099957"]
    assert (first.state, first.attempts) == (PhaseState.QUEUED, 0)
    assert first.spec == PhaseSpec(command=("echo", "7"), timeout_seconds=30, env=(("N", "7"),))
    assert late.spec == PhaseSpec(command=("echo", "99957"))
    # insertion order is file order: the queue drains the file from the top
    ordered = sorted(run_07.values(), key=lambda p: p.created_seq)
    assert [p.phase_id for p in ordered[:3]] == ["p0000007", "p0000057", "p0000107"]
    assert ordered[-1].phase_id == "p0099957"


@pytest.mark.parametrize("suffix", [".jsonl", ".yaml"])
def test_jsonl_and_yaml_files_over_many_batches_are_imported(database_url, workdir, capsys, suffix):
    backlog = write(workdir / f"big{suffix}", [row(i) for i in range(12_001)])
    code, out, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 0, err
    assert "imported 12001 phases" in out
    stored = phases(database_url)
    assert len(stored) == 12_001
    assert stored[("run-00", "p0012000")].spec == PhaseSpec(command=("echo", "12000"))


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".yaml"])
def test_a_bad_row_near_the_end_leaves_nothing_written(database_url, workdir, capsys, suffix):
    assert cli(capsys, "enqueue", "--database-url", database_url, "--run-id", "keep", "--phase-id", "p",
               "--", "true")[0] == 0
    rows = [row(i) for i in range(30_000)]
    rows[29_990] = {**rows[29_990], "image_pull_policy": "Sometimes"}
    backlog = write(workdir / f"bad{suffix}", rows)
    code, _, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 2
    line = one_error_line(err)
    assert f"{backlog}:" in line and "row 29991: image_pull_policy must be one of" in line
    assert set(phases(database_url)) == {("keep", "p")}
    db = Database(database_url)
    try:
        assert db.known_runs() == {"keep"}
    finally:
        db.dispose()


def test_a_duplicate_of_an_earlier_batch_names_both_rows(database_url, workdir, capsys):
    rows = [row(i) for i in range(15_000)]
    rows[12_000] = {**rows[2], "command": ["other"]}
    backlog = write(workdir / "dup.jsonl", rows)
    code, _, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 2
    assert one_error_line(err).endswith(
        f"{backlog}: row 12001: duplicate of row 3 (run 'run-02', phase 'p0000002')")
    assert phases(database_url) == {}


def test_a_duplicate_in_one_batch_names_both_rows(database_url, workdir, capsys):
    rows = [row(i) for i in range(9_000)]
    rows[8_999] = rows[5_001]
    backlog = write(workdir / "dup.yaml", rows)
    code, _, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 2
    assert "row 9000: duplicate of row 5002 (run 'run-01', phase 'p0005001')" in one_error_line(err)
    assert phases(database_url) == {}


def test_a_row_already_in_the_backlog_is_named(database_url, workdir, capsys):
    assert cli(capsys, "enqueue", "--database-url", database_url, "--run-id", "run-33", "--phase-id",
               "p0011033", "--", "true")[0] == 0
    backlog = write(workdir / "clash.json", [row(i) for i in range(20_000)])
    code, _, err = cli(capsys, "import", str(backlog), "--database-url", database_url)
    assert code == 2
    assert one_error_line(err).endswith(
        f"{backlog}: row 11034: phase 'p0011033' of run 'run-33' is already in the backlog")
    assert set(phases(database_url)) == {("run-33", "p0011033")}
