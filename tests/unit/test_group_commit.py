"""Group commit of attempt ends: items queued while one is written go in the next group.

Deterministic: a gate holds the first write (a group of one) until the other threads
have queued, so the test does not depend on how the machine schedules them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from batchdrain.drain.group_commit import GroupCommit

DEADLINE = 30.0


class Store:
    """Records every write; the first waits for ``gate``; the groups after it fail ``fail_groups`` times."""

    def __init__(self, fail_groups: int = 0) -> None:
        self.gate = threading.Event()
        self.groups: list[list[int]] = []
        self.fail_groups = fail_groups
        self.lock = threading.Lock()

    def write(self, items: Sequence[int]) -> None:
        if not self.groups:
            assert self.gate.wait(DEADLINE)
            self.groups.append(list(items))
            return
        with self.lock:
            if self.fail_groups > 0:
                self.fail_groups -= 1
                raise RuntimeError("connection lost")
            self.groups.append(list(items))


def _queued(commit: GroupCommit[int], count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(commit._queue) < count:  # the waiters behind the gated write
        assert time.monotonic() < deadline, "the threads never queued"
        time.sleep(0.005)


def _submit_all(commit: GroupCommit[int], store: Store, items: range) -> dict[int, bool]:
    """The first item is written (gated) as a group of one while the others queue behind it."""
    outcome: dict[int, bool] = {}

    def submit(item: int) -> None:
        outcome[item] = commit.submit(item)

    first = threading.Thread(target=submit, args=(items[0],))
    first.start()
    deadline = time.monotonic() + DEADLINE
    while not commit._leading:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    rest = [threading.Thread(target=submit, args=(item,)) for item in items[1:]]
    for thread in rest:
        thread.start()
    _queued(commit, len(rest))
    store.gate.set()
    for thread in [first, *rest]:
        thread.join(DEADLINE)
        assert not thread.is_alive()
    return outcome


def test_ends_queued_behind_a_write_are_committed_together_each_once() -> None:
    store = Store()
    commit = GroupCommit(store.write, most=64)
    outcome = _submit_all(commit, store, range(11))
    assert store.groups[0] == [0]
    assert len(store.groups) == 2 and sorted(store.groups[1]) == list(range(1, 11))
    assert outcome == dict.fromkeys(range(11), True)
    assert (commit.groups, commit.grouped, commit.failed_groups) == (2, 11, 0)


def test_a_group_holds_at_most_its_bound_and_the_rest_follow_in_order() -> None:
    store = Store()
    commit = GroupCommit(store.write, most=4)
    outcome = _submit_all(commit, store, range(11))
    assert [len(g) for g in store.groups] == [1, 4, 4, 2]
    assert sorted(i for g in store.groups for i in g) == list(range(11))
    assert all(outcome.values()) and len(outcome) == 11


def test_a_failed_group_hands_every_end_back_to_be_written_alone() -> None:
    store = Store(fail_groups=1)
    commit = GroupCommit(store.write, most=64)
    outcome = _submit_all(commit, store, range(6))
    assert outcome[0] is True  # the first group, of one
    assert [outcome[i] for i in range(1, 6)] == [False] * 5  # each caller writes its own again
    assert store.groups == [[0]] and commit.failed_groups == 1
    assert commit.last_failure == "RuntimeError: connection lost"
    # Nothing is left holding the lead: the next end is written at once.
    assert commit.submit(99) is True and store.groups == [[0], [99]]


def test_a_write_interrupted_by_a_base_exception_raises_in_its_thread_and_frees_the_lead() -> None:
    def interrupted(_items: Sequence[int]) -> None:
        raise KeyboardInterrupt

    commit: GroupCommit[int] = GroupCommit(interrupted)
    with pytest.raises(KeyboardInterrupt):
        commit.submit(1)
    assert not commit._leading and not commit._queue
