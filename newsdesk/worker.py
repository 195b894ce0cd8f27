"""The long-running process: each package's consumers, and the scheduled jobs on the one elected worker.

Part of the composition root (with `runtime.py` and `cli.py`): it imports each package's `jobs` module statically.
`<package>.jobs.register(scheduler, settings, stop)` adds scheduled jobs (with fixed ids and `replace_existing=True`;
here to a `newsdesk.jobruns.JobPlan`, applied to the leader's scheduler) and may start daemon threads that watch the
`stop` event; monitor's also takes the process's classifier handle.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from finetune import jobs as finetune_jobs
from finetune.classifier import ClassifierHandle
from monitor import jobs as monitor_jobs
from newsdesk import jobruns, locks
from newsdesk.errors import Unavailable
from newsdesk.settings import Settings
from recsys import behaviour as recsys_behaviour
from recsys import jobs as recsys_jobs

log = logging.getLogger(__name__)

JOB_PACKAGES = ("finetune", "recsys", "monitor")
ELECT_EVERY_S = 5.0  # a follower tries to take the schedule over, the leader checks it still holds it, this often


def build_scheduler(settings: Settings, background: bool = True, worker: str | None = None) -> Any:
    """A scheduler whose jobs persist in the application database (table `apscheduler_jobs`); its executor claims
    and records every tick in `job_runs` as `worker` (default: this process)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    from newsdesk.db import get_engine

    cls = BackgroundScheduler if background else BlockingScheduler
    recorder = jobruns.Recorder(settings.database_url, worker or locks.owner_name())
    return cls(
        jobstores={"default": SQLAlchemyJobStore(engine=get_engine(settings.database_url))},
        executors={"default": jobruns.recording_executor(recorder, max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )


def register_all(scheduler: Any, settings: Settings, stop: threading.Event,
                 classifier_handle: Any | None = None) -> list[str]:
    """Let each package add its jobs (to a scheduler or a `JobPlan`) and start its consumers; returns the packages."""
    finetune_jobs.behaviour_source = recsys_behaviour.behaviour_source  # recsys targets for the recsys retrain
    finetune_jobs.register(scheduler, settings, stop)
    recsys_jobs.register(scheduler, settings, stop)
    monitor_jobs.register(scheduler, settings, stop, classifier_handle=classifier_handle)
    return list(JOB_PACKAGES)


class Worker:
    """Consumers on every worker; the scheduled jobs on one worker at a time, elected through the database.

    Every worker consumes the stream. The one holding the `scheduler` lock (`newsdesk.locks`: a PostgreSQL advisory
    lock on a connection of its own; with SQLite a file lock, so one process per database file) runs the jobs on
    its own APScheduler scheduler; the others try to take the lock over every `elect_every_s` and the leader checks
    that it still holds it as often (it stops its scheduler at once when it does not). A killed leader's lock goes
    with its connection: another worker leads within `elect_every_s` (a vanished machine: within ~30 s more).
    Startable in the foreground (`newsdesk worker`) or in the background (`serve`).
    """

    def __init__(self, settings: Settings, classifier_handle: Any | None = None, *,
                 elect_every_s: float = ELECT_EVERY_S) -> None:
        """`classifier_handle`: the process's sentiment handle (shared with the web app under `serve`)."""
        self.settings = settings
        self.classifier_handle = classifier_handle if classifier_handle is not None else ClassifierHandle(settings)
        self.stop_event = threading.Event()
        self.name = locks.owner_name()
        self.elect_every_s = elect_every_s
        self.plan = jobruns.JobPlan()
        self.scheduler = build_scheduler(settings, background=True, worker=self.name)  # started while leading
        self.packages: list[str] = []
        self._held: locks.HeldLock | None = None
        self._elector: threading.Thread | None = None
        self._term = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._held is not None

    def start(self) -> None:
        self.packages = register_all(self.plan, self.settings, self.stop_event, self.classifier_handle)
        self.plan.apply(self.scheduler)  # not started: lists the jobs (pending) until this worker leads
        self.elect()
        self._elector = threading.Thread(target=self._elect_loop, name="scheduler-election", daemon=True)
        self._elector.start()
        log.info("worker %s started: jobs from %s (%s the schedule)", self.name, ", ".join(self.packages),
                 "leading" if self.is_leader else "following")

    def elect(self) -> bool:
        """One round: take the schedule if it is free, or check that we still hold it; True while leading."""
        with self._term:
            if self.stop_event.is_set():
                return False
            if self._held is not None:
                if not self._held.alive():
                    self._step_down("lost the scheduler lock")
                return self._held is not None
            try:
                held = locks.try_acquire(self.settings.database_url, jobruns.SCHEDULER_LOCK,
                                         fallback_dir=self.settings.home / "locks")
            except Unavailable as exc:
                log.info("scheduler election postponed: %s", exc.message)
                return False
            if held is not None:
                self._lead(held)
            return self._held is not None

    def _lead(self, held: locks.HeldLock) -> None:
        """Start a fresh scheduler with the plan's jobs (stored ones not in the plan are removed)."""
        scheduler = build_scheduler(self.settings, background=True, worker=self.name)
        try:
            self.plan.apply(scheduler)
            scheduler.start(paused=True)
            for job in scheduler.get_jobs():
                if job.id not in self.plan.calls:  # left by an older version or another configuration
                    scheduler.remove_job(job.id)
            interrupted = jobruns.Recorder(self.settings.database_url, self.name).interrupt_others()
            scheduler.resume()
        except Exception:
            held.release()
            if scheduler.running:
                scheduler.shutdown(wait=False)
            log.exception("could not start the scheduler; the schedule stays free")
            return
        self._held, self.scheduler = held, scheduler
        log.info("worker %s now runs the scheduled jobs%s", self.name,
                 f" ({interrupted} unfinished run(s) of an earlier leader marked interrupted)" if interrupted else "")

    def _step_down(self, reason: str) -> None:
        log.warning("worker %s stops running the scheduled jobs: %s", self.name, reason)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._held is not None:
            self._held.release()
            self._held = None
        self.scheduler = build_scheduler(self.settings, background=True, worker=self.name)
        self.plan.apply(self.scheduler)

    def _elect_loop(self) -> None:
        while not self.stop_event.wait(self.elect_every_s):
            try:
                self.elect()
            except Exception:  # never let the election thread die: log, retry next round
                log.exception("scheduler election round failed")

    def stop(self) -> None:
        self.stop_event.set()
        with self._term:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            if self._held is not None:
                self._held.release()
                self._held = None
        log.info("worker stopped")

    def run_forever(self) -> None:
        self.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop_event.set())
        try:
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()


@click.command("worker")
@click.pass_context
def worker_command(ctx: click.Context) -> None:
    """Run the scheduler and stream consumers until stopped (Ctrl-C)."""
    from newsdesk import db

    settings: Settings = ctx.find_root().obj
    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    Worker(settings).run_forever()
