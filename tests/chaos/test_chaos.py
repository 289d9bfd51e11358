"""Crash safety under chaos (SPEC criteria 6 and 7) with the local executor on Postgres."""

from __future__ import annotations

from tests.chaos.chaos import run_chaos


def test_random_sigkills_with_three_controllers_lose_nothing(postgres_url, tmp_path):
    result = run_chaos(database_url=postgres_url, workdir=tmp_path, phases=80, kills=8, controllers=3)
    assert result["kills"] == 8, result
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0 and result["overlaps"] == 0, result
    assert result["unfinished_attempts"] == 0 and result["unexplained_nulls"] == 0, result
    assert result["unexpected_exits"] == [], result
    assert result["interrupted_attempts"] >= 1, result  # the kills really hit running attempts
