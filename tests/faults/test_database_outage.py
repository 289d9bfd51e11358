"""Postgres down for longer than ``--retry-max-seconds`` while Jobs run (issue 16, fault 2).

The real controller (kubernetes executor) drains into a Postgres of this test's own,
which is stopped for 60 s (the retry bound is the default 30 s) while four phases run.
The session halts with one line (exit 1), the Jobs it ran finish and their ends are
written once the database is back, under the session's lease; nothing is left in the
cluster, no phase runs twice, every stored log holds each printed line once, and the
next session drains the rest.

It stops no cluster component: run it alone, under the cluster lock, like the others.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from batchdrain.db import Database
from tests.e2e.conftest import Drainer, wait_for
from tests.faults.test_cluster_faults import (
    assert_clean_outcome,
    assert_lines_exactly_once,
    counting_phase,
    running_pods,
)
from tests.pgserver import PostgresServer, start_postgres

OUTAGE_SECONDS = 60.0
PHASES = 8


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


class PostgresDrainer(Drainer):
    url = ""

    @property
    def db_url(self) -> str:
        return self.url


def test_postgres_down_60s_under_running_jobs(drainer: Drainer, own_postgres: PostgresServer) -> None:
    pg = PostgresDrainer(drainer.cluster, drainer.namespace, drainer.workdir)
    pg.url = own_postgres.url
    # Short phases: those running when Postgres stops end inside the outage's first 30 s,
    # so their ends' writes outlast the retry bound (a write begun later would only pause).
    pg.import_rows([{"run_id": "outage", "phase_id": f"p{i}", "command": counting_phase(12)}
                    for i in range(PHASES)])
    proc = pg.start_drain("--parallelism", "4", "--scheduling-timeout-seconds", "300",
                          "--start-timeout-seconds", "300")
    try:
        wait_for(lambda: running_pods(pg) >= 4, "four running pods", timeout=300)
        stopped = time.monotonic()
        own_postgres.restart(down_seconds=OUTAGE_SECONDS)
        print(f"\nPostgres down for {time.monotonic() - stopped:.0f}s")
        _, err = proc.communicate(timeout=900)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 1, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "unavailable" in errors[0] and "stopped selecting phases" in errors[0], err
    db = Database(pg.url)
    try:
        first = db.sessions()
        ran = db.attempts()
    finally:
        db.dispose()
    assert len(first) == 1 and first[0].status == "failed", first
    assert ran and all(a.status == "finished" and a.failure_class == "succeeded" for a in ran), [
        (a.phase_id, a.status, a.failure_class, a.message) for a in ran]
    assert len(ran) < PHASES, "every phase ran: the outage stopped nothing"
    for session in {a.session_id for a in ran}:
        wait_for(lambda s=session: pg.session_objects(s) == [], f"session {session}'s Jobs and pods to go",
                 timeout=90)

    done = pg.drain("--parallelism", "4")
    attempts = assert_clean_outcome(pg, done, PHASES)
    assert done.returncode == 0, done.stderr
    assert Counter(a.failure_class for a in attempts) == {"succeeded": PHASES}, "a phase ran twice or failed"
    for attempt in attempts:
        assert_lines_exactly_once(attempt)
