"""What a report lists about its attempts, gathered one attempt at a time in bounded memory.

A session may have 10^5 attempts or more; its report is built while they stream
past, page by page, so each list here keeps its first examples and counts the rest:
failure clusters (at most ``CLUSTERS`` distinct ones, each naming at most
``CLUSTER_PHASES`` phases), instant completes and identity mismatches. Under the caps
the lists are exactly what report/v1 had; above them the counts stay exact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from batchdrain.classify import normalise_error_line
from batchdrain.db import AttemptRecord
from batchdrain.domain import FailureClass

CLUSTERS = 200
CLUSTER_PHASES = 50
INSTANT_EXAMPLES = 100
# Larger than the other lists: the read commands rebuild each row's ``identity_check``
# from this list, which they can do exactly while it is complete.
IDENTITY_EXAMPLES = 1000


@dataclass
class _Cluster:
    failure_class: str
    signature: str
    example: str | None
    count: int = 0
    phases: set[str] = field(default_factory=set)
    phases_more: int = 0  # attempts of the cluster whose phase is past the cap

    def add(self, phase: str) -> None:
        self.count += 1
        if phase in self.phases:
            return
        if len(self.phases) < CLUSTER_PHASES:
            self.phases.add(phase)
        else:
            self.phases_more += 1

    def to_json(self) -> dict[str, Any]:
        return {"failure_class": self.failure_class, "signature": self.signature or "(no error line)",
                "example": self.example, "count": self.count, "phases": sorted(self.phases),
                "phases_more": self.phases_more}


@dataclass
class ReportAccumulator:
    """Fed each attempt (with its identity check and instant verdict), in any order.

    Holds at most ``CLUSTERS`` clusters and the first examples of each list, whatever
    the number of attempts: the report's memory does not grow with the session.
    """

    _clusters: dict[tuple[str, str], _Cluster] = field(default_factory=dict)
    other_clusters: set[tuple[str, str]] = field(default_factory=set, repr=False)
    other_cluster_count: int = 0
    other_cluster_attempts: int = 0
    instant_completes: list[dict[str, Any]] = field(default_factory=list)
    instant_count: int = 0
    identity_mismatches: list[dict[str, Any]] = field(default_factory=list)
    identity_count: int = 0
    left_running: list[dict[str, Any]] = field(default_factory=list)
    first_start: dt.datetime | None = None
    last_end: dt.datetime | None = None

    def add(self, attempt: AttemptRecord, *, instant: str | None, identity_check: str) -> None:
        ids = {"run_id": attempt.run_id, "phase_id": attempt.phase_id, "attempt": attempt.attempt}
        self._cluster(attempt)
        if instant:
            self.instant_count += 1
            if len(self.instant_completes) < INSTANT_EXAMPLES:
                self.instant_completes.append({**ids, "why": instant})
        if identity_check != "ok":
            self.identity_count += 1
            if len(self.identity_mismatches) < IDENTITY_EXAMPLES:
                self.identity_mismatches.append({**ids, "problem": identity_check})
        if attempt.status == "running":  # at most the session's parallelism
            self.left_running.append(ids)
        end = attempt.finished_at or attempt.created_at
        self.first_start = min(attempt.created_at, self.first_start or attempt.created_at)
        self.last_end = max(end, self.last_end or end)

    def _cluster(self, attempt: AttemptRecord) -> None:
        if attempt.failure_class in (None, FailureClass.SUCCEEDED):
            return
        key = (str(attempt.failure_class), normalise_error_line(attempt.first_error_line or ""))
        cluster = self._clusters.get(key)
        if cluster is None and len(self._clusters) < CLUSTERS:
            cluster = self._clusters[key] = _Cluster(key[0], key[1], attempt.first_error_line or attempt.message)
        if cluster is not None:
            cluster.add(f"{attempt.run_id}/{attempt.phase_id}")
            return
        # Past the cap only a count of distinct signatures is kept, and those are
        # bounded by the cap too: beyond it "at least" is said, never a wrong number.
        self.other_cluster_attempts += 1
        if key not in self.other_clusters and len(self.other_clusters) < CLUSTERS:
            self.other_clusters.add(key)
            self.other_cluster_count += 1

    def failure_clusters(self) -> list[dict[str, Any]]:
        clusters = [c.to_json() for c in self._clusters.values()]
        clusters.sort(key=lambda c: (-c["count"], c["failure_class"], c["signature"]))
        return clusters

    def summary(self) -> dict[str, Any]:
        """The report keys these lists fill, and the counts that go under ``counts``."""
        return {
            "instant_completes": self.instant_completes,
            "failure_clusters": self.failure_clusters(),
            "failure_clusters_other": {
                "clusters": self.other_cluster_count,
                "clusters_at_least": len(self.other_clusters) >= CLUSTERS,
                "attempts": self.other_cluster_attempts,
            },
            "identity_mismatches": self.identity_mismatches,
            "left_running": self.left_running,
            "span": {"first_start": _iso(self.first_start), "last_end": _iso(self.last_end)},
        }

    def counts(self) -> dict[str, int]:
        return {"instant_completes": self.instant_count, "identity_mismatches": self.identity_count,
                "failure_clusters": len(self._clusters) + self.other_cluster_count}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
