"""Job, Pod and Event dicts -> failure class, message and exit code: the names callers import.

The work is done in three modules, this one only gathers their public names so that
callers (the Kubernetes executor, tests) keep one import path while the inside changes:

* ``readers``: pure readers of Job/Pod/Event dicts (conditions, container states, times,
  image, events, the raw status kept on an attempt);
* ``rules``: ``classify_attempt``, an ordered table of rules over ``AttemptFacts``, first
  match wins, ``waiting_outcome``, the fail-fast rule for states that never heal, and
  ``refused_outcome``, a pod the API server refused (the Job's ``FailedCreate`` Events);
* ``pending``: ``pending_outcome``, the scheduling and start time limits of a pod that
  has not got going yet;
* ``queued``: a Job in a Kueue queue, not admitted in time or preempted after admission.
"""

from __future__ import annotations

from batchdrain.classify.facts import (
    CONFIG_REASONS,
    EVICTION_REASONS,
    FAILED_CREATE,
    IMAGE_PULL_REASONS,
    NODE_LOSS_REASONS,
    SIGKILL_EXIT,
    START_ERROR,
    KubeOutcome,
    refused_outcome,
    waiting_outcome,
)
from batchdrain.classify.pending import pending_outcome, podless_limit
from batchdrain.classify.queued import kueue_stopping, not_admitted_outcome, preempted_outcome, suspended
from batchdrain.classify.readers import (
    Obj,
    condition,
    condition_any,
    container_seconds,
    container_started,
    container_status,
    container_times,
    events_summary,
    image_of,
    job_outcome,
    job_synced,
    parse_time,
    pod_phase,
    pod_terminal,
    raw_status,
    terminated_state,
    waiting_state,
)
from batchdrain.classify.rules import classify_attempt

__all__ = [
    "CONFIG_REASONS",
    "EVICTION_REASONS",
    "FAILED_CREATE",
    "IMAGE_PULL_REASONS",
    "NODE_LOSS_REASONS",
    "SIGKILL_EXIT",
    "START_ERROR",
    "KubeOutcome",
    "Obj",
    "classify_attempt",
    "condition",
    "condition_any",
    "container_seconds",
    "container_started",
    "container_status",
    "container_times",
    "events_summary",
    "image_of",
    "job_outcome",
    "job_synced",
    "kueue_stopping",
    "not_admitted_outcome",
    "parse_time",
    "pending_outcome",
    "pod_phase",
    "pod_terminal",
    "podless_limit",
    "preempted_outcome",
    "raw_status",
    "refused_outcome",
    "suspended",
    "terminated_state",
    "waiting_outcome",
    "waiting_state",
]
