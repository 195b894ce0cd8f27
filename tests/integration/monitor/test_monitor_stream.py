"""Redis Streams consumer group against a real Redis: ack after commit, dead letters, redelivery, the crash test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from monitor_fakes import T0, FakeClassifier, burst_payloads
from sqlalchemy import func, select

from monitor import service, stream
from monitor.tables import Alert, DeadLetter, Message, Notification
from newsdesk import db
from newsdesk.settings import MonitorSettings

pytestmark = pytest.mark.redis


def _drain(consumer: stream.Consumer, rounds: int = 20) -> None:
    for _ in range(rounds):
        if consumer.poll_once(block_ms=50) == 0:
            return


def _count(url: str, model, *where) -> int:
    with db.session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_consumer_stores_acks_and_dead_letters(redis_settings) -> None:
    db.upgrade(redis_settings.database_url)
    with db.session_scope(redis_settings.database_url) as s:
        service.ensure_default_rules(s)
    payloads = burst_payloads() + ['{"text": broken', {"id": "x", "text": 5}]
    assert service.enqueue_messages(redis_settings, payloads, "test") == 20
    assert not stream.drained(redis_settings)  # no group has read the stream yet
    consumer = stream.Consumer(redis_settings, FakeClassifier, name="c1")
    _drain(consumer)
    assert stream.drained(redis_settings)
    url = redis_settings.database_url
    assert _count(url, Message) == 18 and _count(url, DeadLetter) == 2
    assert _count(url, Alert) == 1 and stream.pending_count(redis_settings) == 0
    assert len(consumer.latencies) == 20
    # a redelivery (the same payloads again) stores and alerts nothing new
    service.enqueue_messages(redis_settings, burst_payloads(), "test")
    _drain(consumer)
    assert _count(url, Message) == 18 and _count(url, Alert) == 1 and _count(url, Notification) == 1


def test_failing_entries_are_retried_then_dead_lettered(redis_settings) -> None:
    settings = redis_settings.replace(monitor=MonitorSettings(
        stream_name=redis_settings.monitor.stream_name, consumer_group=redis_settings.monitor.consumer_group,
        max_deliveries=2))
    db.upgrade(settings.database_url)

    def broken():
        raise RuntimeError("bug")

    service.enqueue_messages(settings, burst_payloads(neutral=2, negative=1), "test")
    consumer = stream.Consumer(settings, broken, name="c1", claim_idle_ms=0)
    _drain(consumer)
    assert stream.pending_count(settings) == 3 and _count(settings.database_url, DeadLetter) == 0
    consumer.claim_stale()  # delivery 2: fails again, stays pending
    assert stream.pending_count(settings) == 3
    consumer.claim_stale()  # delivery 3 > max_deliveries: dead-lettered and acked
    assert stream.pending_count(settings) == 0
    with db.session_scope(settings.database_url) as s:
        letters = s.scalars(select(DeadLetter)).all()
        assert len(letters) == 3 and {d.stage for d in letters} == {"process"} and letters[0].deliveries == 3
        # replaying a dead letter once the bug is fixed stores the message
        info = service.replay_dead_letter(s, FakeClassifier(), letters[0].id)
        assert info.message_id is not None


def test_crashed_consumer_is_recovered_by_another(redis_settings) -> None:
    db.upgrade(redis_settings.database_url)
    service.enqueue_messages(redis_settings, burst_payloads(neutral=30, negative=10), "test")
    dead = stream.Consumer(redis_settings, FakeClassifier, name="dead")
    dead._read(100)  # delivered to "dead", which then dies without processing
    assert stream.pending_count(redis_settings) == 40
    time.sleep(0.05)
    alive = stream.Consumer(redis_settings, FakeClassifier, name="alive", claim_idle_ms=10)
    assert alive.claim_stale() == 40
    assert stream.pending_count(redis_settings) == 0 and _count(redis_settings.database_url, Message) == 40


def _crash_payloads(tickers: int = 50, neutral: int = 150, negative: int = 50) -> list[dict]:
    out = []
    for k in range(tickers):
        sym = f"Q{k:02d}X"
        for i in range(neutral):
            out.append({"id": f"{sym}-n{i}", "text": f"${sym} trading update {i}",
                        "ts": T0 + timedelta(hours=i, minutes=k)})
        for i in range(negative):
            out.append({"id": f"{sym}-b{i}", "text": f"${sym} shares plunge on fraud probe {i}",
                        "ts": T0 + timedelta(hours=neutral + 10, minutes=2 * k + i)})
    out.sort(key=lambda p: (p["ts"], p["id"]))
    return [{**p, "ts": p["ts"].isoformat() + "Z"} for p in out]


def _spawn(settings, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_DATABASE_URL": settings.database_url,
           "NEWSDESK_REDIS_URL": settings.redis_url, "NEWSDESK_SECRET_KEY": "x",
           "NEWSDESK_MONITOR__STREAM_NAME": settings.monitor.stream_name,
           "NEWSDESK_MONITOR__CONSUMER_GROUP": settings.monitor.consumer_group}
    script = Path(__file__).with_name("monitor_crash_worker.py")
    return subprocess.Popen([sys.executable, str(script), "1000"], env=env, stdout=log_path.open("ab"),
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[3])


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_kill_9_mid_stream_loses_and_duplicates_nothing(redis_settings, tmp_path: Path) -> None:
    """10,000 messages through Redis; kill -9 the consumer process mid-way, restart: each stored once, no
    duplicated alert (50 tickers, each with exactly one negative burst)."""
    url = redis_settings.database_url
    db.upgrade(url)
    with db.session_scope(url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
    payloads = _crash_payloads()
    assert len(payloads) == 10_000
    service.enqueue_messages(redis_settings, payloads, "crash")
    log = tmp_path / "worker.log"
    first = _spawn(redis_settings, log)
    try:
        _wait(lambda: _count(url, Message) >= 3000, 60, "3000 stored messages")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = _count(url, Message)
        assert killed_at < 10_000, "the worker finished before it could be killed"
        second = _spawn(redis_settings, log)
        try:
            _wait(lambda: _count(url, Message) >= 10_000 and stream.pending_count(redis_settings) == 0, 90,
                  "all 10,000 messages stored and acknowledged")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    with db.session_scope(url) as s:
        assert s.scalar(select(func.count(func.distinct(Message.key)))) == 10_000
        assert s.scalar(select(func.count(DeadLetter.id))) == 0
        alerts = s.scalars(select(Alert)).all()
        assert len(alerts) == 50, log.read_text()[-2000:]
        assert len({a.fingerprint for a in alerts}) == 50
        firing_notes = s.scalar(select(func.count(Notification.id)).where(Notification.event == "firing"))
        assert firing_notes == 50


def test_topic_scoped_rule_fires_through_the_stream(redis_settings) -> None:
    """Replayed through Redis with a topic-capable model: the Legal rule fires, the Earnings rule does not."""
    url = redis_settings.database_url
    db.upgrade(url)
    legal = "Legal | Regulation"
    with db.session_scope(url) as s:
        service.create_rule(s, "legal burst", "negative_burst", {"window_minutes": 60}, topics=[legal])
        service.create_rule(s, "earnings burst", "negative_burst", {"window_minutes": 60}, topics=["Earnings"])
    payloads = [{"id": f"s{i}", "text": f"$XYZ {'quarterly numbers due' if i < 10 else 'fraud lawsuit filed'} #{i}",
                 "ts": (T0 + timedelta(minutes=i)).isoformat() + "Z"} for i in range(18)]
    assert service.enqueue_messages(redis_settings, payloads, "test") == 18
    _drain(stream.Consumer(redis_settings, FakeClassifier, name="topics"))
    with db.session_scope(url) as s:
        assert s.scalar(select(func.count()).select_from(Message).where(Message.topic == legal)) == 8
        fired = s.execute(select(Alert.rule_name, Alert.topic, Alert.state)).all()
    assert fired == [("legal burst", legal, "firing")]
