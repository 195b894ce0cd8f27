"""Locks in the database, the scheduler election and the record of every scheduled job execution."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from newsdesk import db, jobruns, locks
from newsdesk.cli import cli
from newsdesk.errors import Conflict
from newsdesk.settings import Settings
from newsdesk.tables import JobRun
from newsdesk.worker import Worker, build_scheduler

ROOT = Path(__file__).resolve().parents[3]


class NoClassifier:
    def get(self) -> None:
        return None


def _runs(url: str, job_id: str | None = None) -> list[JobRun]:
    with db.session_scope(url) as s:
        query = select(JobRun).order_by(JobRun.scheduled_at)
        return list(s.scalars(query.where(JobRun.job_id == job_id) if job_id else query))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# Locks ------------------------------------------------------------------------------------------------------------


def _lock_contract(url: str, fallback: Path) -> None:
    with locks.hold(url, "train:sentiment", what="a sentiment training run", fallback_dir=fallback) as held:
        assert held.alive()
        busy = rf"a sentiment training run is already in progress \(process {os.getpid()}"
        with pytest.raises(Conflict, match=busy), \
                locks.hold(url, "train:sentiment", what="a sentiment training run", fallback_dir=fallback):
            pass
        assert locks.try_acquire(url, "train:sentiment", fallback_dir=fallback) is None
        assert not locks.is_free(url, "train:sentiment", fallback_dir=fallback)
        assert locks.holder(url, "train:sentiment", fallback_dir=fallback).pid == os.getpid()
        with locks.hold(url, "train:topic", what="x", fallback_dir=fallback):  # another name is independent
            pass
    assert locks.is_free(url, "train:sentiment", fallback_dir=fallback)
    assert locks.holder(url, "train:sentiment", fallback_dir=fallback) is None


def test_sqlite_locks_live_next_to_the_database(settings: Settings, db_url: str) -> None:
    _lock_contract(db_url, settings.home / "locks")
    assert (Path(str(settings.home / "newsdesk.db") + ".locks") / "train-sentiment.lock").is_file()
    # a second home on the same database file sees the same locks
    with locks.hold(db_url, "scheduler", what="x", fallback_dir=settings.home / "locks"):
        assert locks.try_acquire(db_url, "scheduler", fallback_dir=settings.home / "elsewhere") is None


_HOLDER = """
import sys, time
from pathlib import Path
from newsdesk import locks
held = locks.try_acquire(sys.argv[1], "train:sentiment", fallback_dir=Path(sys.argv[2]))
print("held" if held else "busy", flush=True)
time.sleep(120)
"""


def _killed_holder_releases(url: str, fallback: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, url, str(fallback)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Conflict, match=rf"process {proc.pid}"), \
                locks.hold(url, "train:sentiment", what="a sentiment training run", fallback_dir=fallback):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _wait(lambda: locks.is_free(url, "train:sentiment", fallback_dir=fallback), 10, "the lock to be released")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_killed_holder_releases_its_sqlite_lock(settings: Settings, db_url: str) -> None:
    _killed_holder_releases(db_url, settings.home / "locks")


@pytest.mark.postgres
def test_postgres_advisory_locks(pg_url: str, tmp_path: Path) -> None:
    _lock_contract(pg_url, tmp_path)
    _killed_holder_releases(pg_url, tmp_path)


@pytest.mark.postgres
def test_a_lock_whose_session_was_terminated_is_not_alive(pg_url: str, tmp_path: Path) -> None:
    held = locks.try_acquire(pg_url, "scheduler", fallback_dir=tmp_path)
    assert held is not None and held.alive()
    with db.get_engine(pg_url).begin() as conn:
        n = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE application_name LIKE :app"), {"app": f"{locks.APP_PREFIX} % scheduler"}).scalar()
    assert n == 1
    assert not held.alive()
    held.release()  # on a dead connection: no error
    assert locks.is_free(pg_url, "scheduler", fallback_dir=tmp_path)


# The record of executions -------------------------------------------------------------------------------------------


def test_a_tick_is_claimed_once(db_url: str) -> None:
    tick = datetime(2026, 12, 1, 14, 0, 5)
    first, second = jobruns.Recorder(db_url, "a:1"), jobruns.Recorder(db_url, "b:2")
    run_id = first.claim("monitor-notify", tick)
    assert run_id is not None
    assert second.claim("monitor-notify", tick) is None
    assert second.claim("monitor-notify", tick + timedelta(seconds=5)) is not None
    calls: list[int] = []
    assert second.run("monitor-notify", tick, lambda: calls.append(1), (), {}) is None
    assert calls == []  # the tick ran already (on a:1): skipped
    assert second.interrupt_others() == 1  # a:1's run was left "running"
    assert {(r.worker, r.outcome) for r in _runs(db_url)} == {("a:1", "interrupted"), ("b:2", "running")}


def _tick_job() -> str:
    return "ok"


def _failing_job() -> None:
    raise RuntimeError("boom")


def test_the_scheduler_records_every_tick_on_the_anchored_grid(settings: Settings, db_url: str) -> None:
    plan = jobruns.JobPlan()
    plan.add_job(_tick_job, "interval", seconds=1, id="test:tick", replace_existing=True)
    plan.add_job(_failing_job, "interval", seconds=1, id="test:fail", replace_existing=True)
    scheduler = build_scheduler(settings, worker="me:1")
    plan.apply(scheduler)
    scheduler.start()
    try:
        _wait(lambda: len(_runs(db_url, "test:tick")) >= 3 and len(_runs(db_url, "test:fail")) >= 2, 10, "ticks")
    finally:
        scheduler.shutdown(wait=True)
    ticks = _runs(db_url, "test:tick")
    assert all(r.scheduled_at.microsecond == 0 and r.outcome == "succeeded" and r.detail == "ok" for r in ticks)
    gaps = {(b.scheduled_at - a.scheduled_at).total_seconds() for a, b in zip(ticks, ticks[1:])}
    assert gaps == {1.0}
    failed = _runs(db_url, "test:fail")[0]
    assert failed.outcome == "failed" and failed.detail == "RuntimeError: boom" and failed.worker == "me:1"
    assert failed.finished_at >= failed.started_at


def test_jobs_history_cli(settings: Settings, db_url: str) -> None:
    recorder = jobruns.Recorder(db_url, "host-a:11")
    for i in range(3):
        run_id = recorder.claim("monitor-notify", datetime(2026, 12, 1, 14, 0, 5 * i))
        recorder.finish(run_id, jobruns.JobOutcome.SUCCEEDED)
    recorder.claim("recsys:refresh-index", datetime(2026, 12, 1, 14, 0, 0))
    runner = CliRunner()
    home = ["--home", str(settings.home)]
    result = runner.invoke(cli, [*home, "jobs", "history", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["scheduled_at"] for r in rows] == ["2026-12-01T14:00:10.000Z", "2026-12-01T14:00:05.000Z",
                                                "2026-12-01T14:00:00.000Z", "2026-12-01T14:00:00.000Z"]
    assert {r["job_id"] for r in rows} == {"monitor-notify", "recsys:refresh-index"}
    assert all(r["worker"] == "host-a:11" for r in rows)
    assert sorted(r["outcome"] for r in rows) == ["running", "succeeded", "succeeded", "succeeded"]
    result = runner.invoke(cli, [*home, "jobs", "history", "--job", "recsys:refresh-index"])
    assert result.exit_code == 0 and "recsys:refresh-index" in result.output and "monitor-notify" not in result.output
    for bad in (["--bogus"], ["--limit", "0"], ["--limit", "x"]):
        result = runner.invoke(cli, [*home, "jobs", "history", *bad])
        assert result.exit_code == 2, (bad, result.output)
        assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("Error: "), result.output


# The election -----------------------------------------------------------------------------------------------------


def test_one_worker_runs_the_schedule_and_another_takes_over(settings: Settings, db_url: str) -> None:
    """Two workers on one database: the first leads (its scheduler runs), the second only follows; when the first
    stops, the second takes the schedule over on its next election round and removes jobs not in its plan."""
    first = Worker(settings, classifier_handle=NoClassifier(), elect_every_s=0.1)
    second = Worker(settings, classifier_handle=NoClassifier(), elect_every_s=0.1)
    first.start()
    try:
        assert first.is_leader and first.scheduler.running
        first.scheduler.add_job(time.time, "interval", seconds=3600, id="stale:job")  # stored, not planned
        second.start()
        time.sleep(0.3)
        assert not second.is_leader and not second.scheduler.running
        assert {j.id for j in second.scheduler.get_jobs()} == set(second.plan.ids)  # listed, not scheduled
        assert "monitor-notify" in second.plan.ids
        result = CliRunner().invoke(cli, ["--home", str(settings.home), "jobs", "leader", "--json"])
        assert json.loads(result.output) == {"leader": locks.owner_name()}
        first.stop()
        _wait(lambda: second.is_leader, 5, "the second worker to lead")
        assert second.scheduler.running
        assert {j.id for j in second.scheduler.get_jobs()} == set(second.plan.ids)  # stale:job removed
    finally:
        first.stop()
        second.stop()
    assert not second.scheduler.running
    assert locks.is_free(db_url, jobruns.SCHEDULER_LOCK, fallback_dir=settings.home / "locks")


@pytest.mark.postgres
def test_a_leader_that_loses_its_lock_stops_its_scheduler(pg_settings: Settings) -> None:
    first = Worker(pg_settings, classifier_handle=NoClassifier(), elect_every_s=3600)  # rounds run by hand
    second = Worker(pg_settings, classifier_handle=NoClassifier(), elect_every_s=3600)
    first.start()
    second.start()
    try:
        assert first.is_leader and not second.is_leader
        assert not second.elect()
        with db.get_engine(pg_settings.database_url).begin() as conn:  # the leader's lock session dies
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                              ":app"), {"app": f"{locks.APP_PREFIX} % scheduler"})
        assert not first.elect()
        assert not first.is_leader and not first.scheduler.running
        assert second.elect() and second.scheduler.running
        assert not first.elect()  # the schedule is taken: the first stays a follower
    finally:
        first.stop()
        second.stop()


@pytest.mark.postgres
def test_workers_starting_together_migrate_one_at_a_time(pg_url: str) -> None:
    """Two processes upgrading a fresh PostgreSQL database at once: one migrates, the other waits, both succeed."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    fresh = make_url(pg_url).set(database=make_url(pg_url).database + "_fresh")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{fresh.database}"'))
    url = fresh.render_as_string(hide_password=False)
    try:
        script = "import sys; from newsdesk import db; db.upgrade(sys.argv[1]); print('ok')"
        procs = [subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert db.is_migrated(url)
    finally:
        db.get_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{fresh.database}" WITH (FORCE)'))
        admin.dispose()
