"""What the Kubernetes executor keeps between attempts stays as small as what is in flight.

A session runs 10^5 attempts or more through one executor: no structure it holds may
grow with the number of attempts that already finished (issue 15).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from batchdrain.domain import PhaseSpec
from batchdrain.executors.base import AttemptLaunch, StopSignal
from batchdrain.executors.kubernetes import KubernetesExecutor
from batchdrain.executors.kubernetes.watches import Inventory
from batchdrain.identity import Identity
from batchdrain.kube import RetryingKubeApi
from batchdrain.logstore import FileLogSink
from batchdrain.settings import Settings
from tests.unit.fake_kube import Exit, FakeKube, Out, Schedule, Start

SESSION = "batch-drain-20250101-120000"
ATTEMPTS = 60


def _launch(i: int, settings: Settings) -> AttemptLaunch:
    identity = Identity(SESSION, "run-1", f"p{i}", 1, "postgresql://app:pw@db/batch", None)
    spec = PhaseSpec(command=("python", "job.py"))
    return AttemptLaunch(identity=identity, spec=spec, command=spec.command,
                         env=tuple(identity.env(settings).items()), timeout_seconds=60.0, image="python:3.11-slim")


def _sized(root: object) -> Iterator[tuple[str, int]]:
    """Every container held by the executor or by one of its batchdrain parts, with its size."""
    parts: list[tuple[str, object]] = [("executor", root)]
    parts += [(f"executor.{k}", v) for k, v in vars(root).items() if type(v).__module__.startswith("batchdrain.")]
    for where, part in parts:
        held: dict[str, Any] = getattr(part, "__dict__", {})
        for key, value in held.items():
            if isinstance(value, (dict, set, list, frozenset, tuple)):
                yield f"{where}.{key}", len(value)
            for inner_key, inner in getattr(value, "__dict__", {}).items():
                if type(value).__module__.startswith("batchdrain.") and isinstance(inner, (dict, set, list)):
                    yield f"{where}.{key}.{inner_key}", len(inner)


def test_nothing_the_executor_holds_grows_with_finished_attempts(tmp_path: Path) -> None:
    fake = FakeKube()
    fake.script_for = lambda _job: (Schedule(), Start(), Out(b"ok\n"), Exit(0))
    settings = Settings(job_create_rate=1000.0, retry_max_seconds=2.0)
    executor = KubernetesExecutor(RetryingKubeApi(fake, settings), settings, tick_seconds=0.02,
                                  job_condition_grace_seconds=0.5)
    executor.begin(session_id=SESSION, sink=FileLogSink(tmp_path / "logs"))
    stop = StopSignal()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(
                lambda i: executor.execute(_launch(i, settings), stop=stop, on_update=lambda _u: None),
                range(ATTEMPTS)))
        assert all(r.succeeded for r in results), [r.message for r in results if not r.succeeded]
        inventory = executor._watches.inventory
        assert inventory.wait_for(lambda: not inventory.jobs and not inventory.pods, 10.0)
        grown = {where: size for where, size in _sized(executor) if size >= ATTEMPTS // 2}
        assert grown == {}
        assert inventory.deleting == set()
    finally:
        assert executor.end() == []
        fake.wait_idle()


def _job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}}


def test_a_deleted_job_is_marked_until_its_deleted_event_whatever_the_order() -> None:
    inventory = Inventory()
    # Deleted before the watch had even delivered it: marked, then ADDED and DELETED come.
    inventory.job_deleted("early", gone_seen=False)
    inventory.on_job("ADDED", _job("early"))
    assert inventory.deleting.issuperset(inventory.jobs)
    inventory.on_job("DELETED", _job("early"))
    # Deleted while listed: marked until the event.
    inventory.on_job("ADDED", _job("listed"))
    inventory.job_deleted("listed", gone_seen=False)
    assert inventory.deleting == {"listed"}
    inventory.on_job("DELETED", _job("listed"))
    # The tracker heard DELETED, the inventory not yet: still marked, so never unmarked while listed.
    inventory.on_job("ADDED", _job("between"))
    inventory.job_deleted("between", gone_seen=True)
    assert inventory.deleting == {"between"}
    inventory.on_job("DELETED", _job("between"))
    # Both heard it already: nothing to keep.
    inventory.job_deleted("between", gone_seen=True)
    assert inventory.deleting == set() and inventory.jobs == {}
