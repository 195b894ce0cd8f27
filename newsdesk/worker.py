"""The long-running process: APScheduler with a database job store plus each package's jobs and consumers.

Part of the composition root (with `runtime.py` and `cli.py`): it imports each package's `jobs` module statically.
`<package>.jobs.register(scheduler, settings, stop)` adds scheduled jobs (with fixed ids and `replace_existing=True`)
and may start daemon threads that watch the `stop` event; monitor's also takes the process's classifier handle.
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
from newsdesk.settings import Settings
from recsys import behaviour as recsys_behaviour
from recsys import jobs as recsys_jobs

log = logging.getLogger(__name__)

JOB_PACKAGES = ("finetune", "recsys", "monitor")


def build_scheduler(settings: Settings, background: bool = True) -> Any:
    """A scheduler whose jobs persist in the application database (table `apscheduler_jobs`)."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    from newsdesk.db import get_engine

    cls = BackgroundScheduler if background else BlockingScheduler
    return cls(
        jobstores={"default": SQLAlchemyJobStore(engine=get_engine(settings.database_url))},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone="UTC",
    )


def register_all(scheduler: Any, settings: Settings, stop: threading.Event,
                 classifier_handle: Any | None = None) -> list[str]:
    """Let each package add its jobs and consumers; returns the packages that registered."""
    finetune_jobs.behaviour_source = recsys_behaviour.behaviour_source  # recsys targets for the recsys retrain
    finetune_jobs.register(scheduler, settings, stop)
    recsys_jobs.register(scheduler, settings, stop)
    monitor_jobs.register(scheduler, settings, stop, classifier_handle=classifier_handle)
    return list(JOB_PACKAGES)


class Worker:
    """Scheduler + consumers, startable in the foreground (`newsdesk worker`) or in the background (`serve`)."""

    def __init__(self, settings: Settings, classifier_handle: Any | None = None) -> None:
        """`classifier_handle`: the process's sentiment handle (shared with the web app under `serve`)."""
        self.settings = settings
        self.classifier_handle = classifier_handle if classifier_handle is not None else ClassifierHandle(settings)
        self.stop_event = threading.Event()
        self.scheduler = build_scheduler(settings, background=True)
        self.packages: list[str] = []

    def start(self) -> None:
        self.packages = register_all(self.scheduler, self.settings, self.stop_event, self.classifier_handle)
        self.scheduler.start()
        log.info("worker started: jobs from %s", ", ".join(self.packages))

    def stop(self) -> None:
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
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
