"""Crash safety under chaos (SPEC criteria 6 and 7) with the local executor on Postgres."""

from __future__ import annotations

from tests.chaos.chaos import assert_nothing_lost, describe, run_chaos


def test_random_sigkills_with_three_controllers_lose_nothing(postgres_url, tmp_path):
    result = run_chaos(database_url=postgres_url, workdir=tmp_path, phases=80, kills=8, controllers=3)
    print(result)
    print(describe(postgres_url))  # shown with -s, and by pytest when the test fails
    assert_nothing_lost(result, kills=8, explain=lambda: describe(postgres_url))
    # the kills really hit running attempts
    assert result["interrupted_attempts"] >= 1, f"{result}\n{describe(postgres_url)}"
