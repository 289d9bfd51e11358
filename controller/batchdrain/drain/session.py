"""``DrainSession``: one invocation of the controller, from selection to the final report.

The loop is deliberately boring: plan once (pure ``selection``), then, whenever worker
slots are free (at most ``parallelism``), claim that many phases of the plan in one
transaction and hand each to a worker, which runs it through the executor and records
the outcome. Claiming happens lazily, just before launch, so several controllers on
one database share a backlog instead of reserving it up front (``claiming``).
Progress an executor reports is written in batches (``progress``).

Nothing here swallows an exception. An executor that raises is recorded on the
attempt as ``api_error`` with the exception's type and text; a database that fails
ends the session with status ``failed`` and the error on the session row. A log that
could not be stored whole (the log volume stayed full past ``log_write_retry_seconds``)
is recorded on its attempt, and the session stops selecting and ends ``failed``: going
on would run phases whose logs cannot be kept. A database lost (or full) past the retry
bound stops selecting the same way; the attempts running go on, and their ends are
written when the database answers again, for as long as this session's lease keeps them
its own (``recording``). What is still unwritten then stays open for the next session.
"""

from __future__ import annotations

import concurrent.futures as cf
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from batchdrain import __version__
from batchdrain.db import AttemptOpening, Claim, Database, DatabaseUnavailable
from batchdrain.domain import (
    AttemptProgress,
    Phase,
    RunCounts,
    utcnow,
)
from batchdrain.drain.adoption import controller_identity, holder_gone, process_gone
from batchdrain.drain.claiming import CLAIM_BATCH, LostClaims, PlanCursor, Workers
from batchdrain.drain.launches import launch_for
from batchdrain.drain.observer import DrainObserver, SilentObserver
from batchdrain.drain.orphans import take_orphans
from batchdrain.drain.planning import make_plan
from batchdrain.drain.progress import ProgressBuffer
from batchdrain.drain.recording import AttemptRecorder
from batchdrain.drain.reporting import PendingReport, ReportFiles, skipped_rows
from batchdrain.executors.base import AttemptLaunch, Executor, OrphanAttempt, StopSignal
from batchdrain.identity import mask_url
from batchdrain.logstore import LogSink
from batchdrain.metrics import Metrics
from batchdrain.report import build_summary
from batchdrain.selection import Plan
from batchdrain.settings import Settings


@dataclass
class SessionOutcome:
    session_id: str
    report: dict[str, Any]
    leaks: list[str]
    interrupted: bool
    not_claimed: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # why the session stopped early (one line): API lost, log store full
    # Phases held by another session that is alive: one line each, whom and until when.
    waiting: list[str] = field(default_factory=list)
    # Jobs left running on purpose (SIGTERM, lost API) for the next session: not leaks.
    left_for_adoption: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 for leaks or an early stop the controller did not ask for; SIGTERM is asked for."""
        return 1 if self.leaks or self.error else 0


def masked_settings(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    for key in ("database_url", "phase_database_url"):
        data[key] = mask_url(data.get(key))
    return data


class DrainSession:
    def __init__(
        self,
        *,
        db: Database,
        sink: LogSink,
        executor: Executor,
        settings: Settings,
        observer: DrainObserver | None = None,
        stop: StopSignal | None = None,
        metrics: Metrics | None = None,
        preflight: dict[str, Any] | None = None,
    ) -> None:
        self.db = db
        self.sink = sink
        self.executor = executor
        self.settings = settings
        self.observer: DrainObserver = observer or SilentObserver()
        self.stop = stop or StopSignal()
        self.metrics = metrics or Metrics(registry=None)
        self.preflight = preflight or {}
        self.session_id = ""
        self._not_claimed = LostClaims()
        self._lock = threading.Lock()
        self._adopted: list[tuple[str, str]] = []
        self._notes: list[str] = []
        self._waiting: list[str] = []
        # When the last heartbeat (or the session's start) began: the phases this session
        # holds are leased to it until then plus lease_seconds.
        self._leased_from = time.monotonic()
        self._recorder = AttemptRecorder(db=db, sink=sink, settings=settings, metrics=self.metrics,
                                         observer=self.observer, lease_left=self._lease_left)
        self._progress = ProgressBuffer(db, on_error=self._note)

    # -- identity ------------------------------------------------------------------
    def _phase_database_url(self) -> str:
        return self.settings.phase_database_url or self.settings.database_url

    def session_identity(self) -> dict[str, Any]:
        names = self.settings.identity_names()
        return {
            "controller": controller_identity(__version__),
            "database_url": mask_url(self.db.url),
            "phase_database_url": mask_url(self._phase_database_url()),
            "database_url_secret": self.settings.database_url_secret,
            "api_url": self.settings.api_url,
            "env_names": names,
            "log_store": self.sink.location(),
            "executor": self.executor.describe(),
            "preflight": self.preflight,
        }

    def _launch(self, phase: Phase, attempt: int, *, session_id: str | None = None) -> AttemptLaunch:
        return launch_for(phase, attempt, session_id=session_id or self.session_id, settings=self.settings)

    # -- the session ---------------------------------------------------------------
    def run(self) -> SessionOutcome:
        """Plan, run the plan (adopting dead sessions' attempts first), report."""
        the_plan = make_plan(self.db, self.settings)
        before = self.db.run_counts()
        self.metrics.set_run_counts(before)  # queue depth by run, for the dashboard
        self._begin()
        started = time.monotonic()
        with self._heartbeating():
            try:
                touched = self._execute(the_plan)
            except BaseException as err:
                self._end_executor()  # close the watches; the session row records the failure
                self.db.end_session(self.session_id, status="failed", counts={}, report=None,
                                    error=f"{type(err).__name__}: {err}")
                raise
        leaks = self._end_executor()
        try:
            report = self._report(the_plan, before=before, touched=touched, leaks=leaks,
                                  wall_seconds=time.monotonic() - started)
            return self._end(report, leaks)
        except DatabaseUnavailable as err:
            # Still lost after the retry bound: neither the report nor the session's end
            # can be written. The next session closes this one and adopts what it left.
            return SessionOutcome(self.session_id, {}, leaks, self.stop.stopping, self._not_claimed.keys,
                                  self._halt_line(f"{err}; the session's report was not written"),
                                  left_for_adoption=self.executor.left_for_adoption())

    def _halt_line(self, error: str) -> str:
        """Why the session stopped, with what it leaves open, in one line."""
        left = self._recorder.unrecorded
        if left:
            error += (f"; {len(left)} attempt end(s) not written before the lease ran out, left open for the "
                      f"next session to adopt: {', '.join(left)}")
        return error

    def _lease_left(self) -> float:
        return self._leased_from + self.settings.lease_seconds - time.monotonic()

    def _begin(self) -> None:
        self._leased_from = time.monotonic()
        self.session_id = self.db.create_session(
            executor=self.executor.name, settings=masked_settings(self.settings), identity={},
        )
        self.executor.begin(session_id=self.session_id, sink=self.sink)
        self.db.set_session_identity(self.session_id, self.session_identity())

    @contextmanager
    def _heartbeating(self) -> Iterator[None]:
        stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True)
        heartbeat.start()
        try:
            with self._progress.flushing():
                yield
        finally:
            stop.set()
            heartbeat.join(timeout=5)

    def _note(self, line: str) -> None:
        with self._lock:
            self._notes.append(f"{utcnow().isoformat()} {line}")

    def _execute(self, the_plan: Plan) -> set[str]:
        """Adopt orphans, then run the plan page after page; returns the runs touched."""
        touched: set[str] = set()
        self.observer.planned(the_plan)
        with cf.ThreadPoolExecutor(max_workers=self.settings.parallelism,
                                   thread_name_prefix="attempt") as pool:
            workers = Workers(pool, self.settings.parallelism)
            for phase, orphan in self._orphans():
                while not workers.reserve(1, timeout=0.5):
                    workers.raise_error()
                workers.run(self._adopt, phase, orphan)
            page = the_plan
            while True:
                touched |= {s.phase.run_id for s in page.selected}
                self._run_page(page, workers)
                workers.wait_idle()
                # An unlimited session pages through a large backlog; phases this
                # session already ran are not picked again by a later page. A short page
                # is planned after too: phases it completed may have released dependents
                # (declared needs), which this session then runs.
                if self.settings.batch_size or self.stop.stopping or self._halt_reason():
                    break
                try:
                    page = make_plan(self.db, self.settings, exclude_session=self.session_id)
                except DatabaseUnavailable as err:
                    self._recorder.halting(err)
                    break
                if not page.selected:
                    break
                self.observer.planned(page)
        return touched | {run_id for run_id, _ in self._adopted}

    def _run_page(self, page: Plan, workers: Workers) -> None:
        """Claim the page's phases as worker slots come free, each handed to a worker at once.

        A lost cluster API or a full log store stops new claims: the phases stay QUEUED
        for a later session instead of each failing the same way.
        """
        cursor = PlanCursor(page.phases)
        while cursor and not (self.stop.stopping or self._halt_reason()):
            workers.raise_error()
            free = workers.reserve(CLAIM_BATCH, timeout=0.5)
            if not free:
                continue
            window = cursor.window()
            want = min(free, len(window))
            try:
                claims = self._claim(window, want)
            except DatabaseUnavailable as err:
                workers.unreserve(free)
                self._recorder.halting(err)  # what runs goes on; nothing new starts
                return
            except BaseException:
                workers.unreserve(free)
                raise
            workers.unreserve(free - len(claims))
            lost = cursor.settle(window, {claim.phase.created_seq for claim, _ in claims}, wanted=want)
            with self._lock:
                self._not_claimed.add(lost)
            planned = {phase.created_seq: phase for phase in window}
            for claim, launch in claims:
                workers.run(self._run_claimed, planned[claim.phase.created_seq], claim, launch)

    def _claim(self, window: list[Phase], want: int) -> list[tuple[Claim, AttemptLaunch]]:
        """Claim up to ``want`` phases of ``window``; each with the launch its attempt row records."""
        launches: dict[int, AttemptLaunch] = {}

        def opening(phase: Phase, attempt: int) -> AttemptOpening:
            # Built before the attempt row is written, so that the row records what will run.
            launch = launches[phase.created_seq] = self._launch(phase, attempt)
            return AttemptOpening(command=launch.command, image=launch.image, identity=launch.identity.masked())

        planned = {phase.created_seq: phase for phase in window}
        claims = self.db.claim_some(window, want=want, session_id=self.session_id,
                                    lease_seconds=self.settings.lease_seconds, executor=self.executor.name,
                                    opening=opening)
        # A claim found committed on a retry (``claim_some``) built no launch in this call.
        return [(claim, launches.get(claim.phase.created_seq)
                 or self._launch(planned[claim.phase.created_seq], claim.attempt)) for claim in claims]

    def _report(self, the_plan: Plan, *, before: dict[str, RunCounts], touched: set[str], leaks: list[str],
                wall_seconds: float) -> PendingReport:
        """The summary, from one pass over the attempts (which writes the rows file) and SQL."""
        after = self.db.run_counts()
        self.metrics.set_run_counts(after)
        files = ReportFiles(self.sink, self.session_id)
        expected = {"database_url": mask_url(self._phase_database_url()), "api_url": self.settings.api_url}
        skipped = skipped_rows(the_plan, self._not_claimed.keys)
        lists = files.gather(self.db.session_attempts(self.session_id), expected=expected,
                             instant_threshold=self.settings.instant_threshold_seconds)
        summary = build_summary(
            session=self.db.session(self.session_id, report=False), tally=self.db.attempt_tally(self.session_id),
            lists=lists, before={r: before.get(r, RunCounts()) for r in sorted(touched)},
            after={r: after.get(r, RunCounts()) for r in sorted(touched)},
            leaks=leaks, skipped=skipped,
            skipped_count=len(skipped) - len(self._not_claimed.keys) + self._not_claimed.count,
            wall_seconds=wall_seconds, interrupted=self.stop.stopping,
        )
        return PendingReport(summary, files)

    def _end(self, pending: PendingReport, leaks: list[str]) -> SessionOutcome:
        """Add the notes and why the session stopped early, store the report, close the session row."""
        report = pending.summary
        halted = self.executor.unavailable()
        if halted:
            halted += "; session stopped early: unstarted phases stay queued, open attempts are adopted " \
                      "by the next session"
            self._notes.append(halted)
        report["notes"] = list(self._notes)
        report["waiting"] = list(self._waiting)
        left = self.executor.left_for_adoption()
        report["left_for_adoption"] = left
        error = self._recorder.halt or halted
        if error:
            error = self._halt_line(error)
        report["notes"].extend(self.db.silences())
        report["halted"] = error
        stored = pending.files.write_documents(report)
        if stored is not None:
            report["notes"].append(stored)
            error = error or stored
        status = "interrupted" if self.stop.stopping else ("leaked" if leaks else "complete")
        if error:
            status = "failed"
        self.db.end_session(self.session_id, status=status, counts=report["counts"], report=report, error=error)
        return SessionOutcome(self.session_id, report, leaks, self.stop.stopping, self._not_claimed.keys, error,
                              waiting=list(self._waiting), left_for_adoption=left)

    def _halt_reason(self) -> str | None:
        return self._recorder.halt or self.executor.unavailable()

    def _end_executor(self) -> list[str]:
        leaks = self.executor.end()
        self.metrics.leaks.set(len(leaks))
        return leaks

    def _heartbeat(self, stop: threading.Event) -> None:
        interval = self.settings.lease_seconds / 4
        while not stop.wait(interval):
            beat = time.monotonic()
            try:
                self.db.heartbeat(self.session_id, self.settings.lease_seconds)
                self._leased_from = beat
            except DatabaseUnavailable as err:
                # Keep trying: a missed beat only shortens the lease; giving up would let
                # another controller adopt phases this one is still running.
                self._note(f"heartbeat failed: {err}")

    def _orphans(self) -> list[tuple[Phase, OrphanAttempt]]:
        """Take over what dead sessions left open: each with its phase and its launch.

        A session whose lease has not expired keeps its attempts unless its controller
        is provably gone; the phases that wait for a live one are said (``waiting``).
        """
        self._adopted = []
        found = []
        orphans = take_orphans(self.db, session_id=self.session_id, lease_seconds=self.settings.lease_seconds,
                               gone=self._holder_gone)
        self._waiting = orphans.waiting
        self._notes.extend(orphans.closed)
        for adoption in orphans.taken:
            orphan, row = adoption.orphan, adoption.orphan.attempt
            if adoption.why:
                self._notes.append(f"adopted {row.run_id}/{row.phase_id} attempt {row.attempt} at once from "
                                   f"session {row.session_id}: {adoption.why}")
            launch = self._launch(orphan.phase, row.attempt, session_id=row.session_id)
            found.append((orphan.phase, OrphanAttempt(
                launch=launch, session_id=row.session_id, job_name=row.job_name,
                pod_uid=row.pod_uid,
                started_at_iso=row.started_at.isoformat() if row.started_at else None,
                pid=orphan.pid, host=orphan.host, attempt_pk=row.attempt_pk)))
            self._adopted.append((row.run_id, row.phase_id))
        return found

    def _holder_gone(self, controller: Mapping[str, Any]) -> str | None:
        return holder_gone(controller, host=socket.gethostname(), process_is_gone=process_gone,
                           pod_gone=self.executor.holder_pod_gone)

    def _adopt(self, phase: Phase, orphan: OrphanAttempt) -> None:
        def update(progress: AttemptProgress) -> None:
            self._progress.put(orphan.attempt_pk, progress)

        result = self._recorder.guarded(lambda: self.executor.adopt(orphan, stop=self.stop, on_update=update),
                               what="adopting the attempt")
        if result.raw_status is None:
            result.raw_status = {}
        result.raw_status["adopted_by_session"] = self.session_id
        self._recorder.finish(phase, orphan.attempt_pk, orphan.launch.identity.attempt, result,
                              progress=self._progress.take(orphan.attempt_pk))

    def _run_claimed(self, phase: Phase, claim: Claim, launch: AttemptLaunch) -> None:
        """Run one claimed attempt of ``phase`` (as planned) in a worker slot and record it."""
        if self.stop.stopping or self._halt_reason():
            # Claimed for a free slot a moment ago, but the session is stopping: the phase
            # goes back as it was rather than be held by a session that will not run it.
            self._recorder.release(claim, session_id=self.session_id, to_state=phase.state)
            return
        self.observer.attempt_started(phase, claim.attempt)
        self.metrics.running.inc()

        def update(progress: AttemptProgress) -> None:
            self._progress.put(claim.attempt_pk, progress)

        try:
            result = self._recorder.guarded(lambda: self.executor.execute(launch, stop=self.stop, on_update=update),
                                   what="running the attempt")
        finally:
            self.metrics.running.dec()
        self._recorder.finish(phase, claim.attempt_pk, claim.attempt, result,
                              progress=self._progress.take(claim.attempt_pk))
