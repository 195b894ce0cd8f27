"""Scheduled jobs as code and a record of every execution: the job plan, the recording executor, the history.

Every package's `register(scheduler, ...)` adds its jobs to a `JobPlan` (the same `add_job` call as on a
scheduler); the worker that wins the scheduler election applies the plan to a fresh APScheduler scheduler. Interval
jobs are anchored at `ANCHOR`, so every worker computes the same ticks, and each tick is claimed in `job_runs`
before it runs ((job_id, scheduled_at) is unique): a tick runs at most once, whichever worker holds the schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from newsdesk.db import session_scope, utcnow
from newsdesk.errors import Unavailable
from newsdesk.tables import JobRun

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "scheduler"  # the lock (newsdesk.locks) whose holder, one worker, runs the scheduled jobs
ANCHOR = datetime(2000, 1, 1, tzinfo=timezone.utc)  # interval jobs tick at ANCHOR + k * interval on every worker
RETENTION = timedelta(days=7)  # job_runs rows older than this are deleted (at most once an hour per worker)
DETAIL_CHARS = 500


class JobOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its worker died (or lost the schedule) before it finished


JOB_OUTCOMES = tuple(o.value for o in JobOutcome)


class JobPlan:
    """The scheduled jobs, defined in code: records `add_job` calls (the scheduler's signature) to replay them on
    the scheduler of whichever worker leads."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def add_job(self, func: Callable[..., Any], trigger: Any = None, **kwargs: Any) -> None:
        if not kwargs.get("id"):
            raise ValueError("scheduled jobs need a fixed id")
        self.calls[kwargs["id"]] = ((func, trigger), kwargs)

    @property
    def ids(self) -> list[str]:
        return list(self.calls)

    def apply(self, scheduler: Any) -> None:
        """Add every job to `scheduler` (replacing a stored one of the same id), interval jobs anchored."""
        for args, kwargs in self.calls.values():
            kwargs = dict(kwargs, replace_existing=True)
            if args[1] == "interval":
                kwargs.setdefault("start_date", ANCHOR)
            scheduler.add_job(*args, **kwargs)


def _summary(result: Any) -> str:
    return "" if result is None else str(result)[:DETAIL_CHARS]


class Recorder:
    """Claims ticks in `job_runs` and records how they end, for one worker (`worker`: host:pid)."""

    def __init__(self, url: str, worker: str) -> None:
        self.url, self.worker = url, worker
        self._last_prune = 0.0

    def claim(self, job_id: str, scheduled_at: datetime) -> int | None:
        """The new row's id, or None when the tick was already claimed (by any worker).

        Raises:
            Unavailable: the database cannot be reached.
        """
        tick = scheduled_at.astimezone(timezone.utc).replace(tzinfo=None) if scheduled_at.tzinfo else scheduled_at
        self._prune()
        try:
            with session_scope(self.url) as session:
                row = JobRun(job_id=job_id, worker=self.worker, scheduled_at=tick, started_at=utcnow(),
                             outcome=JobOutcome.RUNNING, detail="")
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            return None

    def finish(self, run_id: int, outcome: JobOutcome, detail: str = "") -> None:
        with session_scope(self.url) as session:
            row = session.get(JobRun, run_id)
            if row is not None:
                row.outcome, row.finished_at, row.detail = outcome, utcnow(), detail[:DETAIL_CHARS]

    def run(self, job_id: str, scheduled_at: datetime, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Claim the tick, run `func`, record the outcome; a tick claimed before is skipped (returns None)."""
        try:
            run_id = self.claim(job_id, scheduled_at)
        except Unavailable as exc:
            log.warning("job %s (tick %s) not run: cannot record it (%s)", job_id, scheduled_at, exc.message)
            return None
        if run_id is None:
            log.warning("job %s: tick %s already ran (on another worker); skipped", job_id, scheduled_at)
            return None
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            self._finish_quietly(run_id, JobOutcome.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self._finish_quietly(run_id, JobOutcome.SUCCEEDED, _summary(result))
        return result

    def _finish_quietly(self, run_id: int, outcome: JobOutcome, detail: str) -> None:
        try:
            self.finish(run_id, outcome, detail)
        except Unavailable as exc:  # the row stays "running"; the next leader marks it interrupted
            log.warning("job run %d: outcome %s not recorded (%s)", run_id, outcome, exc.message)

    def interrupt_others(self) -> int:
        """Rows left "running" by other workers become "interrupted" (called by a new leader: only the leader runs
        jobs, so they were its predecessor's)."""
        with session_scope(self.url) as session:
            result = session.execute(sa.update(JobRun).where(JobRun.outcome == JobOutcome.RUNNING,
                                                             JobRun.worker != self.worker)
                                     .values(outcome=JobOutcome.INTERRUPTED, finished_at=utcnow(),
                                             detail="its worker stopped before it finished"))
            return int(result.rowcount or 0)

    def _prune(self) -> None:
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        with session_scope(self.url) as session:
            session.execute(sa.delete(JobRun).where(JobRun.scheduled_at < utcnow() - RETENTION))


def recording_executor(recorder: Recorder, max_workers: int = 4) -> Any:
    """An APScheduler thread-pool executor that runs each tick through `recorder.run` (claim, run, record).

    It hands APScheduler a view of the job whose `func` is bound to that tick's scheduled time: the stock
    `run_job` (misfire check, events, logging) stays as it is. Coalescing: only the latest due tick runs.
    """
    from apscheduler.executors.pool import ThreadPoolExecutor

    class RecordingExecutor(ThreadPoolExecutor):
        def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
            super()._do_submit_job(_TickJob(job, run_times[-1], recorder), run_times[-1:])

    return RecordingExecutor(max_workers)


class _TickJob:
    """An APScheduler job seen through one tick: everything delegates to the job except `func`."""

    def __init__(self, job: Any, tick: datetime, recorder: Recorder) -> None:
        self._job, self._tick, self._recorder = job, tick, recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)

    @property
    def func(self) -> Callable[..., Any]:
        job, tick, recorder = self._job, self._tick, self._recorder
        return lambda *args, **kwargs: recorder.run(job.id, tick, job.func, args, kwargs)


# The history ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRunInfo:
    job_id: str
    worker: str
    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    detail: str

    @property
    def seconds(self) -> float | None:
        return round((self.finished_at - self.started_at).total_seconds(), 3) if self.finished_at else None

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat(timespec="milliseconds") + "Z" if value else None

        return {"job_id": self.job_id, "worker": self.worker, "scheduled_at": iso(self.scheduled_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "seconds": self.seconds,
                "outcome": self.outcome, "detail": self.detail}


def history(session: Any, *, job_id: str | None = None, worker: str | None = None, limit: int = 50,
            since: datetime | None = None) -> list[JobRunInfo]:
    """Executions of scheduled jobs, newest tick first."""
    query = sa.select(JobRun).order_by(JobRun.scheduled_at.desc(), JobRun.id.desc()).limit(limit)
    if job_id:
        query = query.where(JobRun.job_id == job_id)
    if worker:
        query = query.where(JobRun.worker == worker)
    if since is not None:
        query = query.where(JobRun.scheduled_at >= since)
    return [JobRunInfo(r.job_id, r.worker, r.scheduled_at, r.started_at, r.finished_at, r.outcome, r.detail or "")
            for r in session.scalars(query)]
