"""The same ingest -> rules -> alerts path on PostgreSQL (production), including two writers racing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from monitor_fakes import T0, FakeClassifier, burst_payloads
from sqlalchemy import func, select

from monitor import service
from monitor.tables import Alert, Message, MessageTicker
from newsdesk import db

pytestmark = pytest.mark.postgres


def test_ingest_dedup_alert_and_series_on_postgres(pg_url: str) -> None:
    with db.session_scope(pg_url) as s:
        service.ensure_default_rules(s)
        service.ensure_default_watchlist(s)
        extra = ["{bad", {"text": "\x00Apple up", "ts": "2015-06-01T09:00:00"}]
        first = service.ingest_messages(s, FakeClassifier(), burst_payloads() + extra, "test")
        assert (first.stored, first.dead_lettered, len(first.alerts_fired)) == (19, 1, 1)
    with db.session_scope(pg_url) as s:
        again = service.ingest_messages(s, FakeClassifier(), burst_payloads(), "test")
        assert (again.stored, again.duplicates) == (0, 18)
        alerts, total = service.list_alerts(s, state="firing", ticker="xyz")
        assert total == 1 and len(service.get_alert(s, alerts[0].id).evidence) == 8
        series = service.sentiment_series(s, ticker="XYZ", since=T0 - timedelta(hours=1), bucket="hour")
        assert sum(r["total"] for r in series) == 18 and sum(r["negative"] for r in series) == 8
        assert s.scalar(select(Message.tickers).where(Message.text == "Apple up")) == "AAPL"


def test_two_writers_store_each_message_once_on_postgres(pg_url: str) -> None:
    with db.session_scope(pg_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
    payloads = burst_payloads(neutral=40, negative=40)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(0, len(payloads), 8):
                with db.session_scope(pg_url) as s:
                    service.ingest_messages(s, FakeClassifier(), payloads[i:i + 8], "test")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.session_scope(pg_url) as s:
        assert s.scalar(select(func.count(Message.id))) == 80
        assert s.scalar(select(func.count(MessageTicker.id))) == 80
        assert s.scalar(select(func.count(Alert.id))) == 1
