"""Scale-out (issue #18): two worker processes with their own NEWSDESK_HOMEs on one PostgreSQL, one Redis and one
model store (NEWSDESK_MODEL_STORE, a shared directory).

10,000 messages are replayed through Redis; the worker that runs the scheduled jobs is killed with SIGKILL halfway.
Before that, a real 2-step sentiment version is trained and promoted from the leader's home. Checked: every message
stored once, no alert twice, each scheduled job ran at most once per tick on the job's anchored grid and on one
worker at a time (none even tried a tick that another ran), the survivor took the schedule over within the bound
(60 s), and the version promoted from the dead leader's home is listed as current by `newsdesk models` and served,
with the same scores, from the survivor's home (fetched from the store into that home's cache; a `newsdesk classify`
process of another home: tests/integration/finetune/test_finetune_store_two_homes.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))  # the shared model-store helpers

from store_support import PROBE, home_settings, train_tiny

from finetune import jobs as finetune_jobs
from finetune.classifier import ClassifierHandle
from monitor import jobs as monitor_jobs
from monitor import service, stream
from monitor.tables import Alert, DeadLetter, Message, Notification
from newsdesk import db, jobruns, locks
from newsdesk.cli import cli
from newsdesk.settings import Settings
from recsys import jobs as recsys_jobs

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[3]
RULE_INTERVAL_S = 10
T0 = datetime(2015, 6, 1, 9, 0, 0)
TAKEOVER_BOUND_S = 60


def _payloads(tickers: int = 50, per_ticker: int = 200, burst_every: int = 5, burst: int = 20) -> list[dict]:
    """`tickers` x `per_ticker` messages an hour apart; every `burst_every`-th ticker has one burst of `burst`
    negative messages within 20 minutes, ticker k's at hour 20 + 3k: 10 alerts, spread over the whole stream (so
    some fire before the failover and some after)."""
    out = []
    for k in range(tickers):
        sym = f"W{k:02d}X"
        bursts = burst if k % burst_every == 0 else 0
        for i in range(per_ticker - bursts):
            out.append({"id": f"{sym}-n{i}", "text": f"${sym} trading update {i}",
                        "ts": T0 + timedelta(hours=i, minutes=k)})
        for i in range(bursts):
            out.append({"id": f"{sym}-b{i}", "text": f"${sym} shares plunge on fraud probe {i}",
                        "ts": T0 + timedelta(hours=20 + 3 * k, minutes=30 + i)})
    out.sort(key=lambda p: (p["ts"], p["id"]))
    return [{**p, "ts": p["ts"].isoformat() + "Z"} for p in out]


def _spawn(settings: Settings, home: Path, store: Path, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEWSDESK_HOME": str(home), "NEWSDESK_MODEL_STORE": str(store),
           "NEWSDESK_DATABASE_URL": settings.database_url, "NEWSDESK_REDIS_URL": settings.redis_url,
           "NEWSDESK_SECRET_KEY": "x", "NEWSDESK_DEVICE": "cpu",
           "NEWSDESK_MONITOR__STREAM_NAME": settings.monitor.stream_name,
           "NEWSDESK_MONITOR__CONSUMER_GROUP": settings.monitor.consumer_group,
           "NEWSDESK_MONITOR__RULE_INTERVAL_S": str(RULE_INTERVAL_S),
           "NEWSDESK_MONITOR__CLAIM_IDLE_MS": "2000"}
    script = Path(__file__).with_name("two_workers_process.py")
    return subprocess.Popen([sys.executable, str(script)], env=env, stdout=log_path.open("ab"),
                            stderr=subprocess.STDOUT, cwd=ROOT)


def _wait(predicate, timeout: float, what: str, logs: list[Path]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _count(url: str, model) -> int:
    with db.session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model))


def _leader(url: str, tmp_path: Path) -> str | None:
    who = locks.holder(url, jobruns.SCHEDULER_LOCK, fallback_dir=tmp_path)
    return who.owner if who else None


def _history(settings: Settings) -> list[dict]:
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "--database-url", settings.database_url,
                                      "jobs", "history", "--json", "--limit", "100000"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def test_two_workers_share_the_stream_and_hand_over_the_schedule(redis_settings: Settings, pg_url: str,
                                                                  tmp_path: Path) -> None:
    settings = redis_settings.replace(database_url=pg_url)
    with db.session_scope(pg_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
    payloads = _payloads()
    assert len(payloads) == 10_000
    service.enqueue_messages(settings, payloads[:5_000], "scale")  # the second half once the leader has run jobs
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    homes = [tmp_path / "home-a", tmp_path / "home-b"]
    store = tmp_path / "store"
    procs = [_spawn(settings, home, store, log) for home, log in zip(homes, logs)]
    host = socket.gethostname()[:40]
    by_name = {f"{host}:{p.pid}": (p, log) for p, log in zip(procs, logs)}
    home_of = {f"{host}:{p.pid}": home for p, home in zip(procs, homes)}
    try:
        # generous timeouts: starting a worker imports torch, slow on a loaded machine
        _wait(lambda: all("started: jobs from" in log.read_text() for log in logs), 300, "both workers", logs)
        assert _leader(pg_url, tmp_path) in by_name
        leader_name = _leader(pg_url, tmp_path)
        leader = by_name[leader_name][0]
        follower_name, (follower, follower_log) = next((k, v) for k, v in by_name.items() if k != leader_name)

        # a version trained and promoted from the leader's home (while the workers consume the first half)
        on_leader_home = home_settings(home_of[leader_name], pg_url, store)
        promoted = train_tiny(on_leader_home, tmp_path)
        assert promoted.promoted and promoted.path == store / "sentiment" / promoted.version
        leader_scores = [p.scores for p in ClassifierHandle(on_leader_home, refresh_s=0).get().predict(PROBE)]

        def leader_jobs() -> set[str]:
            return {r["job_id"] for r in _history(settings)
                    if r["worker"] == leader_name and r["outcome"] == "succeeded"}

        # the leader must have run its jobs before it dies (a quiet machine stores 5,000 messages within one tick)
        _wait(lambda: _count(pg_url, Message) >= 5_000 and leader_jobs() >= {"monitor-notify", "monitor-rules"},
              300, "5,000 stored messages and the leader's first rules and notify ticks", logs)
        service.enqueue_messages(settings, payloads[5_000:], "scale")
        _wait(lambda: _count(pg_url, Message) >= 5_200, 120, "the second half under way", logs)
        os.kill(leader.pid, signal.SIGKILL)
        killed_at = db.utcnow()
        leader.wait(10)
        assert _count(pg_url, Message) < 10_000, "the workers finished before the leader could be killed"
        takeover_s = _wait(lambda: _leader(pg_url, tmp_path) == follower_name, TAKEOVER_BOUND_S,
                           "the second worker to take the schedule over", logs)

        def follower_ticks() -> int:
            return sum(1 for r in _history(settings) if r["worker"] == follower_name
                       and r["job_id"] == "monitor-notify" and r["outcome"] == "succeeded")

        _wait(lambda: _count(pg_url, Message) >= 10_000 and stream.pending_count(settings) == 0
              and follower_ticks() >= 2, 600, "all messages stored and acknowledged, two ticks on the survivor", logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    # every message stored once, no alert twice
    with db.session_scope(pg_url) as s:
        assert s.scalar(select(func.count(Message.id))) == 10_000
        assert s.scalar(select(func.count(func.distinct(Message.key)))) == 10_000
        assert s.scalar(select(func.count(DeadLetter.id))) == 0
        alerts = s.scalars(select(Alert)).all()
        assert len(alerts) == 10 and len({a.fingerprint for a in alerts}) == 10, follower_log.read_text()[-2000:]
        assert {a.ticker for a in alerts} == {f"W{k:02d}X" for k in range(0, 50, 5)}
        assert s.scalar(select(func.count(Notification.id)).where(Notification.event == "firing")) == 10

    # the schedule: one worker at a time, each job at most once per tick, on its grid; the survivor took over
    runs = _history(settings)
    intervals = {"monitor-notify": monitor_jobs.NOTIFY_EVERY_S, "monitor-rules": RULE_INTERVAL_S,
                 "monitor-classify-pending": monitor_jobs.CLASSIFY_EVERY_S,
                 "finetune:queue": finetune_jobs.QUEUE_INTERVAL_S, "recsys:refresh-index": recsys_jobs.INTERVAL_S}
    assert {r["worker"] for r in runs} == {leader_name, follower_name}
    ticks = Counter((r["job_id"], r["scheduled_at"]) for r in runs)
    assert max(ticks.values()) == 1
    for r in runs:
        if r["job_id"] in intervals:
            since_anchor = _ts(r["scheduled_at"]) - jobruns.ANCHOR.replace(tzinfo=None)
            assert since_anchor.total_seconds() % intervals[r["job_id"]] == 0, r
    before = [r for r in runs if r["worker"] == leader_name]
    after = [r for r in runs if r["worker"] == follower_name]
    assert {r["job_id"] for r in before} >= {"monitor-notify", "monitor-rules"}
    assert {r["job_id"] for r in after} >= {"monitor-notify", "monitor-rules"}
    assert max(_ts(r["started_at"]) for r in before) <= killed_at  # the killed leader ran nothing after its death
    assert min(_ts(r["started_at"]) for r in after) >= killed_at  # the follower ran nothing while it followed
    first_after = min(_ts(r["scheduled_at"]) for r in after if r["job_id"] == "monitor-notify")
    assert (first_after - killed_at).total_seconds() <= TAKEOVER_BOUND_S
    assert {r["outcome"] for r in runs} <= {"succeeded", "interrupted"}  # the dead leader's unfinished ones
    for log in logs:  # nobody tried a tick that another worker had run: one scheduler at a time
        text = log.read_text()
        assert "already ran (on another worker)" not in text
        assert text.count("now runs the scheduled jobs") <= 1
    assert "now runs the scheduled jobs" in follower_log.read_text()
    assert takeover_s <= TAKEOVER_BOUND_S

    # the version promoted from the dead leader's home: listed and served from the survivor's home (via the store)
    on_survivor_home = home_settings(home_of[follower_name], pg_url, store)
    cached = on_survivor_home.models_dir / "sentiment" / promoted.version
    assert not cached.exists()  # nothing of it on this home yet: it comes from the store
    listed = CliRunner().invoke(cli, ["--home", str(on_survivor_home.home), "--database-url", pg_url,
                                      "models", "list", "--task", "sentiment", "--json"],
                                env={"NEWSDESK_MODEL_STORE": str(store)})
    assert listed.exit_code == 0, listed.output
    assert [(v["version"], v["is_current"]) for v in map(json.loads, listed.output.splitlines())] == [
        (promoted.version, True)]
    served = ClassifierHandle(on_survivor_home, refresh_s=0).get()  # what a process of that home serves
    assert served.version == promoted.version and served.parts["sentiment"].folder == cached
    assert [p.scores for p in served.predict(PROBE)] == leader_scores
    assert (cached / "store.json").is_file() and (cached / ".source.json").is_file()  # fetched into its cache
