"""Alert lifecycle: dedup, resolve, acknowledge, silence, repeat, grouping, webhook delivery with retries."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from monitor_fakes import T0, FakeClassifier
from sqlalchemy import select

from monitor import notify, service
from monitor.tables import Alert, Notification
from newsdesk.db import utcnow
from newsdesk.errors import Conflict, InvalidInput, NotFound


@pytest.fixture
def burst_rule(session):
    return service.create_rule(session, "burst", "negative_burst", {"window_minutes": 60}, repeat_interval_s=600)


def _negatives(start, n=8, prefix="n", ticker="XYZ"):
    return [{"id": f"{prefix}{i}", "text": f"${ticker} shares plunge {i}",
             "ts": (start + timedelta(minutes=i)).isoformat()} for i in range(n)]


def test_dedup_then_repeat_after_the_interval(session, burst_rule) -> None:
    clf = FakeClassifier()
    service.ingest_messages(session, clf, _negatives(T0), "test")
    # the burst goes on: same alert, evidence grows, no new notification within the repeat interval
    service.ingest_messages(session, clf, _negatives(T0 + timedelta(minutes=8), 2, "m"), "test")
    alert = session.scalars(select(Alert)).one()
    assert alert.notify_count == 1 and len(service.get_alert(session, alert.id).evidence) == 10
    # 12 minutes later (stream time) it still fires: a repeat notification
    service.ingest_messages(session, clf, _negatives(T0 + timedelta(minutes=20), 4, "r"), "test")
    events = session.scalars(select(Notification.event).order_by(Notification.id)).all()
    assert events == ["firing", "repeat"] and len(session.scalars(select(Alert)).all()) == 1


def test_acknowledged_alert_is_not_repeated(session, burst_rule) -> None:
    clf = FakeClassifier()
    service.ingest_messages(session, clf, _negatives(T0), "test")
    alert_id = session.scalar(select(Alert.id))
    info = service.acknowledge_alert(session, alert_id, "ana", "looking into it")
    assert (info.acknowledged_by, info.ack_note) == ("ana", "looking into it") and info.acknowledged_at
    service.ingest_messages(session, clf, _negatives(T0 + timedelta(minutes=20), 8, "r"), "test")
    assert session.scalars(select(Notification.event)).all() == ["firing"]
    assert [a.id for a in service.list_alerts(session, state="acknowledged")[0]] == [alert_id]
    with pytest.raises(NotFound):
        service.acknowledge_alert(session, 999, "ana")
    with pytest.raises(InvalidInput):
        service.acknowledge_alert(session, alert_id, " ")


def test_silence_mutes_then_expiry_notifies(session, burst_rule) -> None:
    clf = FakeClassifier()
    silence = service.create_silence(session, {"ticker": "xyz"}, utcnow() + timedelta(hours=1), "ana", "earnings")
    assert silence.active and silence.matchers == {"ticker": "XYZ"}
    service.ingest_messages(session, clf, _negatives(T0) + _negatives(T0, prefix="o", ticker="ABC"), "test")
    alerts = {a.ticker: a for a in session.scalars(select(Alert))}
    assert alerts["XYZ"].silence_id == silence.id and alerts["ABC"].silence_id is None
    assert [n.alert_id for n in session.scalars(select(Notification))] == [alerts["ABC"].id]
    assert [a.ticker for a in service.list_alerts(session, state="silenced")[0]] == ["XYZ"]
    service.expire_silence(session, silence.id)
    assert not service.list_silences(session, active_only=True)
    service.ingest_messages(session, clf, _negatives(T0 + timedelta(minutes=8), 1, "m"), "test")
    notes = session.scalars(select(Notification).where(Notification.alert_id == alerts["XYZ"].id)).all()
    assert [n.event for n in notes] == ["firing"]


def test_silence_validation(session) -> None:
    with pytest.raises(InvalidInput):
        service.create_silence(session, {}, utcnow() + timedelta(hours=1), "ana")
    with pytest.raises(InvalidInput):
        service.create_silence(session, {"colour": "red"}, utcnow() + timedelta(hours=1), "ana")
    with pytest.raises(InvalidInput):
        service.create_silence(session, {"ticker": "X"}, utcnow() - timedelta(hours=1), "ana")


def test_resolved_alert_notifies_resolution_and_groups_by_ticker(session, burst_rule) -> None:
    clf = FakeClassifier()
    service.create_rule(session, "kw", "keyword", {"phrases": ["plunge"], "window_minutes": 60})
    service.ingest_messages(session, clf, _negatives(T0), "test")
    groups = service.list_alert_groups(session)
    assert list(groups) == ["XYZ"] and len(groups["XYZ"]) == 2
    calm = {"id": "q", "text": "$XYZ calm", "ts": (T0 + timedelta(hours=3)).isoformat()}
    service.ingest_messages(session, clf, [calm], "test")
    assert {a.state for a in session.scalars(select(Alert))} == {"resolved"}
    events = sorted(session.scalars(select(Notification.event)))
    assert events == ["firing", "firing", "resolved", "resolved"]


def test_rule_crud(session) -> None:
    rule = service.create_rule(session, "vol", "volume_spike", {"min_count": 5}, tickers=["$aapl"])
    assert rule.params["min_count"] == 5 and rule.params["window_minutes"] == 60 and rule.tickers == ["AAPL"]
    with pytest.raises(Conflict):
        service.create_rule(session, "vol", "volume_spike")
    updated = service.update_rule(session, rule.id, params={"z_threshold": 4}, enabled=False)
    assert updated.params["min_count"] == 5 and updated.params["z_threshold"] == 4.0 and not updated.enabled
    with pytest.raises(InvalidInput):
        service.update_rule(session, rule.id, kind="keyword")
    with pytest.raises(InvalidInput):
        service.update_rule(session, rule.id, params={"min_count": -1})
    service.delete_rule(session, rule.id)
    with pytest.raises(NotFound):
        service.delete_rule(session, rule.id)
    assert service.ensure_default_rules(session) == 3 and service.ensure_default_rules(session) == 0


def test_changes_since_streams_alert_updates(session, burst_rule) -> None:
    events, cursor = service.changes_since(session, None)
    assert events == []
    service.ingest_messages(session, FakeClassifier(), _negatives(T0), "test")
    session.flush()
    events, cursor2 = service.changes_since(session, cursor)
    kinds = [e["type"] for e in events]
    assert "alert" in kinds and "messages" in kinds
    assert service.changes_since(session, cursor2)[0] == []


class _Hook(BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        code = type(self).script.pop(0) if type(self).script else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.script, _Hook.received = [], []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook
    server.shutdown()
    server.server_close()


def test_webhook_retries_with_backoff_and_records_attempts(session, burst_rule, webhook) -> None:
    url, hook = webhook
    hook.script = [500, 503]  # two failures, then 200
    service.ingest_messages(session, FakeClassifier(), _negatives(T0), "test")
    now = utcnow()
    assert notify.deliver_pending(session, [url], now=now, backoff_s=10) == {"delivered": 0, "retried": 1, "failed": 0}
    assert notify.deliver_pending(session, [url], now=now + timedelta(seconds=5), backoff_s=10)["retried"] == 0
    assert notify.deliver_pending(session, [url], now=now + timedelta(seconds=11), backoff_s=10)["retried"] == 1
    assert notify.deliver_pending(session, [url], now=now + timedelta(seconds=40), backoff_s=10)["delivered"] == 1
    row = session.scalars(select(Notification)).one()
    assert row.status == "delivered" and [a["status_code"] for a in row.attempts] == [500, 503, 200]
    assert hook.received[-1]["event"] == "firing" and hook.received[-1]["alert"]["ticker"] == "XYZ"
    detail = service.get_alert(session, row.alert_id)
    assert len(detail.notifications[0]["attempts"]) == 3


def test_webhook_gives_up_after_max_attempts_and_fans_out(session, burst_rule, webhook) -> None:
    url, _hook = webhook
    service.ingest_messages(session, FakeClassifier(), _negatives(T0), "test")
    dead = "http://127.0.0.1:9/nothing-listens-here"
    now = utcnow()
    for i in range(3):
        notify.deliver_pending(session, [url, dead], now=now + timedelta(hours=i), max_attempts=3)
    rows = {n.url: n for n in session.scalars(select(Notification))}
    assert rows[url].status == "delivered" and len(rows[url].attempts) == 1
    assert rows[dead].status == "failed" and len(rows[dead].attempts) == 3 and rows[dead].attempts[0]["error"]


def test_notifications_are_skipped_without_urls(session, burst_rule) -> None:
    service.ingest_messages(session, FakeClassifier(), _negatives(T0), "test")
    notify.deliver_pending(session, [])
    assert session.scalar(select(Notification.status)) == "skipped"
