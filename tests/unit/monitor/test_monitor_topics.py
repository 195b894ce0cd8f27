"""Monitoring per topic: topic per message from the one model pass, topic-scoped rules, alerts per topic, migration."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner
from monitor_fakes import T0, FakeClassifier
from sqlalchemy import select, text

from monitor import lifecycle, service
from monitor.replay import replay_file
from monitor.tables import Alert, Message, MessageTicker, Notification
from newsdesk import db
from newsdesk.cli import cli
from newsdesk.errors import InvalidInput

LEGAL = "Legal | Regulation"


def legal_burst(ticker: str = "XYZ", neutral: int = 10, negative: int = 8, prefix: str = "l") -> list[dict]:
    """Neutral earnings chatter, then a burst of negative legal news, about one ticker, a minute apart."""
    out = []
    for i in range(neutral + negative):
        words = "reports quarterly numbers today" if i < neutral else "hit by a fraud lawsuit from investors"
        out.append({"id": f"{prefix}{ticker}{i}", "text": f"${ticker} {words} #{i}",
                    "ts": (T0 + timedelta(minutes=i)).isoformat() + "Z"})
    return out


def test_topic_and_score_come_from_the_same_pass_as_sentiment(session) -> None:
    clf = FakeClassifier()
    result = service.ingest_messages(session, clf, legal_burst(negative=2, neutral=1), "test")
    assert result.classified == 3 and clf.calls == 1  # one predict_tasks call for both tasks
    rows = session.scalars(select(Message).order_by(Message.ts)).all()
    assert [(r.label, r.topic) for r in rows] == [("neutral", "Earnings"), ("negative", LEGAL), ("negative", LEGAL)]
    assert all(r.topic_score == pytest.approx(0.7) for r in rows)
    assert set(session.scalars(select(MessageTicker.topic))) == {"Earnings", LEGAL}
    info = service.latest_messages(session, topic=LEGAL)
    assert len(info) == 2 and info[0].to_dict()["topic"] == LEGAL and info[0].topic_score == pytest.approx(0.7)


def test_a_model_without_topic_head_leaves_topic_null(session) -> None:
    service.ingest_messages(session, FakeClassifier(topics=False), legal_burst(negative=1, neutral=1), "test")
    assert set(session.execute(select(Message.topic, Message.topic_score))) == {(None, None)}
    assert service.list_topics(session) == []


def test_pending_messages_get_their_topic_when_classified_later(session) -> None:
    result = service.ingest_messages(session, None, legal_burst(negative=2, neutral=1), "test")
    assert result.pending == 3 and set(session.scalars(select(Message.topic))) == {None}
    assert service.classify_pending(session, FakeClassifier()) == 3
    assert set(session.scalars(select(Message.topic))) == {"Earnings", LEGAL}
    assert set(session.scalars(select(MessageTicker.topic))) == {"Earnings", LEGAL}


def test_topic_scoped_rule_fires_in_its_topic_only_on_a_replay(settings, db_url, tmp_path) -> None:
    with db.session_scope(db_url) as s:
        legal = service.create_rule(s, "legal burst", "negative_burst", {"window_minutes": 60}, topics=[LEGAL])
        earnings = service.create_rule(s, "earnings burst", "negative_burst", {"window_minutes": 60},
                                       topics=["Earnings"])
        plain = service.create_rule(s, "any burst", "negative_burst", {"window_minutes": 60})
    path = tmp_path / "stream.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in legal_burst()))
    report = replay_file(settings, str(path), to="direct", classifier=FakeClassifier(), progress=False)
    assert report.ingest.stored == 18 and report.ingest.classified == 18
    with db.session_scope(db_url) as s:
        firing, _ = service.list_alerts(s, state="firing")
        by_rule = {a.rule_id: a for a in firing}
        assert set(by_rule) == {legal.id, plain.id}  # nothing in Earnings: 10 neutral, no negative
        alert = by_rule[legal.id]
        assert alert.topic == LEGAL and by_rule[plain.id].topic is None
        assert f"about XYZ within {LEGAL!r}" in alert.summary
        assert alert.fingerprint == lifecycle.fingerprint(legal.id, "XYZ", LEGAL) != \
            lifecycle.fingerprint(legal.id, "XYZ")
        detail = service.get_alert(s, alert.id)
        assert detail.evidence and {m.topic for m in detail.evidence} == {LEGAL}
        assert [a.id for a in service.list_alerts(s, topic=LEGAL)[0]] == [alert.id]
        assert service.list_alerts(s, topic="Earnings")[1] == 0
        groups = service.list_alert_groups(s)
        assert set(groups) == {"XYZ", f"XYZ / {LEGAL}"}
        payload = s.scalar(select(Notification.payload).where(Notification.alert_id == alert.id))
        assert payload["group_key"] == f"XYZ / {LEGAL}" and payload["alert"]["topic"] == LEGAL
        assert earnings.id not in by_rule


def test_the_same_burst_in_another_topic_does_not_fire(session) -> None:
    service.create_rule(session, "earnings burst", "negative_burst", {"window_minutes": 60}, topics=["Earnings"])
    result = service.ingest_messages(session, FakeClassifier(), legal_burst(), "test")
    assert result.alerts_fired == []
    service.create_rule(session, "legal burst", "negative_burst", {"window_minutes": 60}, topics=[LEGAL])
    more = service.ingest_messages(session, FakeClassifier(), legal_burst(neutral=0, negative=2, prefix="m"), "test")
    assert len(more.alerts_fired) == 1
    assert session.get(Alert, more.alerts_fired[0]).topic == LEGAL


def test_one_rule_over_two_topics_keeps_one_alert_per_topic(session) -> None:
    rule = service.create_rule(session, "scoped", "keyword", {"phrases": ["lawsuit", "quarterly"],
                                                              "sentiment": "any"}, topics=["Earnings", LEGAL])
    service.ingest_messages(session, FakeClassifier(), legal_burst(neutral=2, negative=2), "test")
    alerts = session.scalars(select(Alert).where(Alert.rule_id == rule.id).order_by(Alert.topic)).all()
    assert [(a.topic, a.values["matches"]) for a in alerts] == [("Earnings", 2), (LEGAL, 2)]
    assert len({a.fingerprint for a in alerts}) == 2


def test_silence_by_topic_mutes_only_that_topic(session) -> None:
    service.create_rule(session, "scoped", "keyword", {"phrases": ["lawsuit", "quarterly"], "sentiment": "any"},
                        topics=["Earnings", LEGAL])
    silence = service.create_silence(session, {"topic": LEGAL}, db.utcnow() + timedelta(hours=1), "ana")
    service.ingest_messages(session, FakeClassifier(), legal_burst(neutral=2, negative=2), "test")
    marks = dict(session.execute(select(Alert.topic, Alert.silence_id)).all())
    assert marks == {LEGAL: silence.id, "Earnings": None}


def test_rule_topic_scope_is_validated_and_editable(session) -> None:
    rule = service.create_rule(session, "r", "negative_burst", topics=[f"  {LEGAL} ", LEGAL, ""])
    assert rule.topics == [LEGAL]
    with pytest.raises(InvalidInput, match="topics"):
        service.create_rule(session, "bad", "negative_burst", topics=[3])
    with pytest.raises(InvalidInput, match="64"):
        service.update_rule(session, rule.id, topics=["x" * 65])
    assert service.update_rule(session, rule.id, topics=[]).topics == []
    assert service.update_rule(session, rule.id, topics="Earnings").topics == ["Earnings"]
    assert service.list_topics(session) == ["Earnings"]


def test_topic_series_counts_each_message_once_per_topic(session) -> None:
    service.ingest_messages(session, FakeClassifier(), legal_burst(neutral=3, negative=2), "test")
    service.ingest_messages(session, FakeClassifier(), [{"id": "x1", "text": "court date set, no ticker",
                                                         "ts": (T0 + timedelta(minutes=5)).isoformat()}], "test")
    rows = service.topic_series(session, since=T0 - timedelta(hours=1), bucket="hour")
    assert {(r["topic"], r["negative"], r["neutral"], r["total"]) for r in rows} == \
        {("Earnings", 0, 3, 3), (LEGAL, 2, 1, 3)}
    only = service.topic_series(session, topic="Earnings", since=T0 - timedelta(hours=1))
    assert [r["topic"] for r in only] == ["Earnings"]


def test_cli_rules_topic_scope_and_alert_list(settings, db_url) -> None:
    with db.session_scope(db_url) as s:
        rule = service.create_rule(s, "legal burst", "negative_burst", {"window_minutes": 60})
    runner, env = CliRunner(), {"NEWSDESK_HOME": str(settings.home)}
    scoped = runner.invoke(cli, ["alerts", "rules", "--rule", str(rule.id), "--topic", LEGAL], env=env)
    assert scoped.exit_code == 0 and f"scoped to {LEGAL}" in scoped.output
    assert f"[{LEGAL}]" in runner.invoke(cli, ["alerts", "rules"], env=env).output
    bad = runner.invoke(cli, ["alerts", "rules", "--topic", LEGAL], env=env)
    assert bad.exit_code == 3 and bad.output.startswith("Error:")
    with db.session_scope(db_url) as s:
        service.ingest_messages(s, FakeClassifier(), legal_burst(), "test")
    listed = runner.invoke(cli, ["alerts", "list", "--topic", LEGAL, "--json"], env=env)
    doc = json.loads(listed.output)
    assert doc["total"] == 1 and doc["alerts"][0]["topic"] == LEGAL
    assert json.loads(runner.invoke(cli, ["alerts", "list", "--topic", "Earnings", "--json"], env=env).output)[
        "total"] == 0
    cleared = runner.invoke(cli, ["alerts", "rules", "--rule", str(rule.id), "--all-topics"], env=env)
    assert cleared.exit_code == 0 and "every topic" in cleared.output


def test_migration_adds_topic_columns_to_existing_rows(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "monitor@monitor_0002_faults")
    with db.get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO messages (key, source, text, ts, received_at, lang, status, tickers, meta) "
                          "VALUES ('k', 's', 't', '2015-06-01 09:00:00', '2015-06-01 09:00:00', 'en', 'pending', "
                          "'', '{}')"))
        conn.execute(text("INSERT INTO alert_rules (name, kind, enabled, params, tickers, severity, "
                          "repeat_interval_s, created_at, updated_at) VALUES ('old', 'volume_spike', 1, '{}', "
                          "'[]', 'warning', 3600, '2015-06-01 09:00:00', '2015-06-01 09:00:00')"))
    db.upgrade(url)
    with db.session_scope(url) as s:
        assert s.execute(text("SELECT topic, topic_score FROM messages")).one() == (None, None)
        assert service.list_rules(s)[0].topics == []
    db.downgrade(url, "monitor_0002_faults")
    with db.get_engine(url).connect() as conn:
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(messages)"))}
    assert "topic" not in columns and "text" in columns
    db.get_engine(url).dispose()
