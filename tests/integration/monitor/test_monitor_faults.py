"""Issue #21 under real faults: a PostgreSQL database the test blocks, a webhook receiver it stops, two consumers.

The outage helper blocks the test's own database (`ALTER DATABASE ... ALLOW_CONNECTIONS false` and terminating its
backends, from an admin connection to the configured database); it is always lifted again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from monitor_fakes import T0, FakeClassifier, burst_payloads
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from monitor import lifecycle, notify, service, stream
from monitor.rules import RuleResult
from monitor.tables import Alert, AlertRule, DeadLetter, Message, MessageTicker, Notification
from newsdesk import db
from newsdesk.db import utcnow
from newsdesk.errors import Unavailable
from newsdesk.settings import MonitorSettings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@contextmanager
def database_outage(url: str) -> Iterator[None]:
    """No connection to `url`'s database (existing ones are cut) until the block exits."""
    from tests.conftest import PG_URL

    name = make_url(url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def fault_settings(redis_settings, pg_url: str):
    return redis_settings.replace(database_url=pg_url, monitor=MonitorSettings(
        stream_name=redis_settings.monitor.stream_name, consumer_group=redis_settings.monitor.consumer_group,
        max_deliveries=2))


def _count(url: str, model, *where) -> int:
    with db.session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


# 1. A database outage delays, it never dead-letters ------------------------------------------------------------

def test_database_outage_does_not_dead_letter_valid_messages(fault_settings) -> None:
    url = fault_settings.database_url
    service.enqueue_messages(fault_settings, burst_payloads(neutral=4, negative=2), "test")
    consumer = stream.Consumer(fault_settings, FakeClassifier, name="c1", claim_idle_ms=1)
    with database_outage(url):
        with pytest.raises(Unavailable):
            consumer.poll_once(block_ms=100)  # delivery 1
        for _ in range(4):  # the outage lasts: every claim is another delivery, past max_deliveries=2
            time.sleep(0.01)
            with pytest.raises(Unavailable):
                consumer.claim_stale()
    assert stream.pending_count(fault_settings) == 6
    time.sleep(0.01)
    assert consumer.claim_stale() == 6  # the database is back: all stored, nothing dead-lettered
    assert _count(url, Message) == 6 and _count(url, DeadLetter) == 0
    assert stream.pending_count(fault_settings) == 0
    assert consumer.client.exists(stream.keys.outages(fault_settings)) == 0  # refunds cleared on ack


def test_entries_failing_on_a_healthy_database_are_still_dead_lettered_then_bulk_replayed(fault_settings) -> None:
    url = fault_settings.database_url

    def broken():
        raise RuntimeError("bug")

    service.enqueue_messages(fault_settings, burst_payloads(neutral=3, negative=0), "test")
    consumer = stream.Consumer(fault_settings, broken, name="c1", claim_idle_ms=0)
    consumer.poll_once(block_ms=100)
    consumer.claim_stale()
    consumer.claim_stale()  # delivery 3 > 2 on a healthy database: dead-lettered
    assert _count(url, DeadLetter) == 3 and stream.pending_count(fault_settings) == 0
    with db.session_scope(url) as s:
        service.add_dead_letter(s, "test", "validate", "missing field 'text'", '{"id": 1}')
        out = service.replay_dead_letters(s, FakeClassifier(), reason="deliveries")
    assert (out["replayed"], out["still_invalid"]) == (3, 0)
    assert _count(url, Message) == 3 and _count(url, DeadLetter, DeadLetter.status == "open") == 1


# 9. A slow batch is not taken over by another consumer ---------------------------------------------------------

def test_a_slow_batch_keeps_its_claim(fault_settings) -> None:
    url = fault_settings.database_url
    service.enqueue_messages(fault_settings, burst_payloads(neutral=5, negative=0), "test")

    class Slow(FakeClassifier):
        def predict(self, texts, batch_size=64):
            time.sleep(3.0)  # three times the claim idle time below
            return super().predict(texts, batch_size)

    slow_clf = Slow()
    slow = stream.Consumer(fault_settings, lambda: slow_clf, name="slow", claim_idle_ms=1000)
    other_clf = FakeClassifier()
    other = stream.Consumer(fault_settings, lambda: other_clf, name="other", claim_idle_ms=1000)
    worker = threading.Thread(target=slow.poll_once, kwargs={"block_ms": 100})
    worker.start()
    claimed = 0
    while worker.is_alive():
        time.sleep(0.1)
        claimed += other.claim_stale()
    worker.join()
    assert claimed == 0 and other_clf.texts == 0 and slow_clf.texts == 5
    assert _count(url, Message) == 5 and stream.pending_count(fault_settings) == 0


# 4. Two consumers resolving one alert at once: one notification ------------------------------------------------

def test_two_consumers_resolving_one_alert_queue_one_notification(pg_url: str) -> None:
    with db.session_scope(pg_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
        service.ingest_messages(s, FakeClassifier(), burst_payloads(), "test")
    with db.session_scope(pg_url) as s:
        alert = s.scalars(select(Alert)).one()
        rule_id, ticker, now = alert.rule_id, alert.ticker, alert.last_eval_at + timedelta(hours=1)
    calm = RuleResult(met=False, values={}, summary="calm")
    results: list = []

    def second_consumer() -> None:
        with db.session_scope(pg_url) as s:
            results.append(lifecycle.apply_result(s, s.get(AlertRule, rule_id), ticker, calm, now))

    first = db.session_factory(pg_url)()
    try:
        assert lifecycle.apply_result(first, first.get(AlertRule, rule_id), ticker, calm, now).event == "resolved"
        other = threading.Thread(target=second_consumer)
        other.start()  # reads the alert as still firing, then waits on the row lock
        time.sleep(0.5)
        first.commit()
    finally:
        first.close()
    other.join(10)
    assert results == [None]
    assert _count(pg_url, Notification, Notification.event == "resolved") == 1


# 5. A redelivered message changes nothing that was stored ------------------------------------------------------

def test_redelivered_cashtag_spam_gets_no_ticker_links(pg_url: str) -> None:
    spam = {"id": "s1", "ticker": "AAA", "text": "$AAA $BBB $CCC $DDD $EEE $FFF $GGG top movers today",
            "ts": "2015-06-01T09:00:00Z"}
    with db.session_scope(pg_url) as s:
        service.ingest_messages(s, FakeClassifier(), [spam], "test")
        before = s.scalars(select(Message)).one()
        stored = (before.tickers, before.flag, before.status)
    with db.session_scope(pg_url) as s:
        again = service.ingest_messages(s, FakeClassifier(), [spam, {**spam, "ticker": "ZZZ"}], "test")
        assert again.duplicates == 2
    with db.session_scope(pg_url) as s:
        after = s.scalars(select(Message)).one()
        assert (after.tickers, after.flag, after.status) == stored and after.flag == "many_tickers"
    assert _count(pg_url, MessageTicker) == 0


# 2. A webhook outage delays a notification, it does not lose it ------------------------------------------------

class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list] = []

    def do_POST(self) -> None:
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _start_receiver(port: int = 0) -> HTTPServer:
    server = HTTPServer(("127.0.0.1", port), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_webhook_outage_is_retried_until_the_receiver_is_back(pg_url: str) -> None:
    _Receiver.received = []
    server = _start_receiver()
    port = server.server_port
    server.shutdown()
    server.server_close()  # the receiver is down
    hook = f"http://127.0.0.1:{port}/hook"
    with db.session_scope(pg_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
        service.ingest_messages(s, FakeClassifier(), burst_payloads(), "test")
    start = utcnow()
    tick = start
    for _ in range(12):  # 12 failures over ~45 simulated minutes (backoff capped at 10 minutes): never given up
        with db.session_scope(pg_url) as s:
            counts = notify.deliver_pending(s, [hook], now=tick, max_backoff_s=600, retry_for_s=6 * 3600)
            assert counts["failed"] == 0 and counts["delivered"] == 0
            row = s.scalars(select(Notification)).one()
            tick = row.next_attempt_at
    assert tick - start > timedelta(minutes=40)
    with db.session_scope(pg_url) as s:
        items, total = notify.undelivered(s)
        assert total == 1 and items[0]["attempts"] == 12 and "Error" in items[0]["last_error"]
    server = _start_receiver(port)
    try:
        with db.session_scope(pg_url) as s:
            assert notify.deliver_pending(s, [hook], now=tick)["delivered"] == 1
    finally:
        server.shutdown()
        server.server_close()
    assert [r["event"] for r in _Receiver.received] == ["firing"]
    with db.session_scope(pg_url) as s:
        assert notify.undelivered(s)[1] == 0


def test_failed_webhook_gives_up_after_the_period_then_an_operator_retries_it(pg_url: str) -> None:
    _Receiver.received = []
    with db.session_scope(pg_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
        service.ingest_messages(s, FakeClassifier(), burst_payloads(), "test")
    dead = "http://127.0.0.1:9/nothing-listens-here"
    now = utcnow()
    with db.session_scope(pg_url) as s:
        notify.deliver_pending(s, [dead], now=now, retry_for_s=60)
        assert notify.deliver_pending(s, [dead], now=now + timedelta(minutes=2), retry_for_s=60) == \
            {"delivered": 0, "retried": 0, "failed": 1}
        assert s.scalar(select(Notification.status)) == "failed"
    server = _start_receiver()
    try:
        with db.session_scope(pg_url) as s:
            row = s.scalars(select(Notification)).one()
            row.url = f"http://127.0.0.1:{server.server_port}/hook"  # the receiver moved; retry there
            assert notify.retry(s, actor="ops") == 1
            assert notify.deliver_pending(s, [dead])["delivered"] == 1
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Receiver.received) == 1


# 6. The same input yields the same alerts, whatever the consumer interleaving -----------------------------------

def _slice() -> list[dict]:
    out = []
    for n, ticker in enumerate(("AAA", "BBB", "CCC")):
        for k, start in enumerate((T0, T0 + timedelta(hours=8))):  # two bursts per ticker: fire, resolve, fire
            out += burst_payloads(ticker, neutral=6, negative=6 + n, start=start + timedelta(seconds=20 * n),
                                  id_prefix=f"b{k}-")
        # calm messages between the bursts, past the 6-hour burst window: the first alerts resolve
        out += burst_payloads(ticker, neutral=3, negative=0, start=T0 + timedelta(hours=7, seconds=20 * n),
                              step_s=600, id_prefix="calm-")
    return sorted(out, key=lambda p: (p["ts"], p["id"]))


def _alerts(url: str) -> list[tuple]:
    with db.session_scope(url) as s:
        alerts = [(a.ticker, a.rule_name, a.started_at, a.resolved_at, a.state)
                  for a in s.scalars(select(Alert).order_by(Alert.ticker, Alert.started_at, Alert.rule_name))]
        events = sorted(s.execute(select(Alert.ticker, Alert.started_at, Notification.event)
                                  .join(Notification, Notification.alert_id == Alert.id)).all())
    return [alerts, events]


def _run(settings, interleave) -> list[tuple]:
    db.upgrade(settings.database_url)
    with db.session_scope(settings.database_url) as s:
        service.ensure_default_rules(s)
    service.enqueue_messages(settings, _slice(), "test")
    interleave(settings)
    with db.session_scope(settings.database_url) as s:
        assert s.scalar(select(func.count(Message.id))) == len(_slice())
    return _alerts(settings.database_url)


def _one_consumer(settings) -> None:
    c1 = stream.Consumer(settings, FakeClassifier, name="c1")
    while c1.poll_once(block_ms=50):
        pass


def _one_slow(first: int, later: int):
    """c2 commits `first` batches, c1 takes the next one and stalls while c2 commits `later` more, then both go on."""

    def interleave(settings) -> None:
        c1 = stream.Consumer(settings, FakeClassifier, name="c1")
        c2 = stream.Consumer(settings, FakeClassifier, name="c2")
        for _ in range(first):
            c2.poll_once(block_ms=50)
        held = c1._read(50)
        for _ in range(later):
            c2.poll_once(block_ms=50)
        c1._process(held, deliveries={})
        while c2.poll_once(block_ms=50) or c1.poll_once(block_ms=50):
            pass

    return interleave


def test_same_slice_same_alerts_under_other_interleavings(redis_settings, tmp_path) -> None:
    """One slice through one consumer, then through two where one stalls on a batch of the first burst while the
    other commits later batches: the same alerts (start and end times) and the same notifications."""
    from newsdesk.settings import Settings

    def variant(name: str):
        home = tmp_path / name
        base = Settings.load(env={}, home=home, secret_key="x", device="cpu")
        base.ensure_dirs()
        return base.replace(redis_url=redis_settings.redis_url, monitor=MonitorSettings(
            stream_name=f"{redis_settings.monitor.stream_name}-{name}",
            consumer_group=redis_settings.monitor.consumer_group, batch_size=8, batch_wait_ms=10))

    sequential = _run(variant("seq"), _one_consumer)
    assert sequential[0] and any(a[3] is not None for a in sequential[0])  # alerts fired and resolved
    for first, later in ((2, 3), (3, 2)):
        assert _run(variant(f"slow{first}"), _one_slow(first, later)) == sequential, (first, later)


def test_running_consumer_rides_out_an_outage_without_reading_ahead(fault_settings) -> None:
    """The consumer loop during an outage: its failed batch stays its own, it reads nothing new while the database
    is down, and it stores everything soon after the database is back (not only after claim_idle_ms)."""
    url = fault_settings.database_url
    service.enqueue_messages(fault_settings, burst_payloads(neutral=30, negative=0), "test")
    settings = fault_settings.replace(monitor=MonitorSettings(
        stream_name=fault_settings.monitor.stream_name, consumer_group=fault_settings.monitor.consumer_group,
        max_deliveries=2, batch_size=10, batch_wait_ms=10))
    stop = threading.Event()
    consumer = stream.Consumer(settings, FakeClassifier, stop, name="c1", claim_idle_ms=600_000)
    with database_outage(url):
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        time.sleep(4.0)  # three or more failed attempts (backoff 1 s, 2 s)
        assert stream.pending_count(settings) == 10  # one batch taken, none read ahead
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _count(url, Message) < 30:
        time.sleep(0.2)
    stop.set()
    thread.join(10)
    assert _count(url, Message) == 30 and _count(url, DeadLetter) == 0
