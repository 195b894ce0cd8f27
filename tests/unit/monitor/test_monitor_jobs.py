"""Worker wiring, the interval jobs and the CLI commands."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import timedelta

from click.testing import CliRunner
from monitor_fakes import T0, FakeClassifier, burst_payloads
from sqlalchemy import func, select

from monitor import jobs, service
from monitor.replay import replay_file
from monitor.tables import Alert, Message
from newsdesk import db
from newsdesk.cli import cli
from newsdesk.worker import build_scheduler


def test_register_adds_persistent_jobs(settings, db_url) -> None:
    scheduler = build_scheduler(settings)
    jobs.register(scheduler, settings, threading.Event())
    scheduler.start(paused=True)
    try:
        assert {j.id for j in scheduler.get_jobs()} == {"monitor-rules", "monitor-classify-pending", "monitor-notify"}
    finally:
        scheduler.shutdown(wait=False)


def test_interval_jobs(settings, db_url, monkeypatch) -> None:
    with db.session_scope(db_url) as s:
        service.create_rule(s, "burst", "negative_burst", {"window_minutes": 60})
        service.ingest_messages(s, None, burst_payloads(), "test")  # no model: pending
    assert jobs.classify_pending_job(settings) == 0  # still no model: nothing happens, nothing lost
    monkeypatch.setattr(jobs, "classifier_for", lambda _s: FakeClassifier())
    assert jobs.classify_pending_job(settings) == 18
    with db.session_scope(db_url) as s:
        assert s.scalar(select(Alert.state)) == "firing"
        # the flow moves on (another ticker, a day later): the interval job resolves the quiet ticker's alert
        service.ingest_messages(s, FakeClassifier(), [{"id": "z", "text": "$ABC hi",
                                                       "ts": (T0 + timedelta(days=1)).isoformat()}], "test",
                                evaluate_rules=False)
    assert jobs.evaluate_rules_job(settings) == 1
    with db.session_scope(db_url) as s:
        assert s.scalar(select(Alert.state)) == "resolved"
    assert jobs.deliver_notifications_job(settings) == {"delivered": 0, "retried": 0, "failed": 0}


def test_cli_replay_is_idempotent_and_alerts_list(settings, tmp_path) -> None:
    path = tmp_path / "s.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for p in burst_payloads():
            fh.write(json.dumps(p) + "\n")
        fh.write("{not json\n\n")
    runner = CliRunner()
    env = {"NEWSDESK_HOME": str(settings.home)}
    first = runner.invoke(cli, ["stream", "replay", str(path)], env=env)
    assert first.exit_code == 0, first.output
    # no sentiment model in this home: stored as pending, no alert yet; the classify job labels them later
    assert "18 stored" in first.output and "18 pending" in first.output and "1 rejected" in first.output
    assert "0 alerts fired" in first.output
    with db.session_scope(settings.database_url) as s:
        assert service.classify_pending(s, FakeClassifier()) == 18
    second = runner.invoke(cli, ["stream", "replay", str(path), "--limit", "5"], env=env)
    assert "0 stored" in second.output and "5 duplicates" in second.output
    listed = runner.invoke(cli, ["alerts", "list", "--json"], env=env)
    doc = json.loads(listed.output)
    assert doc["total"] == 1 and doc["alerts"][0]["ticker"] == "XYZ"
    alert_id = doc["alerts"][0]["id"]
    ack = runner.invoke(cli, ["alerts", "ack", str(alert_id), "--note", "seen", "--by", "ana"], env=env)
    assert ack.exit_code == 0 and "Acknowledged" in ack.output
    assert "XYZ" in runner.invoke(cli, ["alerts", "list", "--state", "acknowledged"], env=env).output
    silence = runner.invoke(cli, ["alerts", "silence", "--ticker", "XYZ", "--duration", "1h"], env=env)
    assert silence.exit_code == 0 and "XYZ" in silence.output
    missing = runner.invoke(cli, ["alerts", "ack", "999"], env=env)
    assert missing.exit_code == 4 and "not found" in missing.output
    bad = runner.invoke(cli, ["alerts", "silence", "--duration", "1h"], env=env)
    assert bad.exit_code == 3
    with db.session_scope(settings.database_url) as s:
        assert s.scalar(select(func.count(Message.id))) == 18


def test_cli_replay_missing_file(settings) -> None:
    result = CliRunner().invoke(cli, ["stream", "replay", "/nope.jsonl"], env={"NEWSDESK_HOME": str(settings.home)})
    assert result.exit_code == 4 and "no such file" in result.output


def test_cli_dead_letters_list_and_replay(settings, db_url) -> None:
    with db.session_scope(db_url) as s:
        service.ingest_messages(s, None, ['{"text": 1}'], "test")
        letter = service.add_dead_letter(s, "test", "classify", "model crashed", '{"id": "d1", "text": "$XYZ ok"}')
        s.flush()
        letter_id = letter.id
    env = {"NEWSDESK_HOME": str(settings.home)}
    runner = CliRunner()
    listed = runner.invoke(cli, ["stream", "dead-letters"], env=env)
    assert listed.exit_code == 0 and "2 of 2 dead letters" in listed.output and "model crashed" in listed.output
    replayed = runner.invoke(cli, ["stream", "dead-letters", "--replay", str(letter_id)], env=env)
    assert replayed.exit_code == 0 and "replayed as message" in replayed.output
    again = runner.invoke(cli, ["stream", "dead-letters", "--replay", str(letter_id)], env=env)
    assert again.exit_code == 5


def test_cli_dead_letters_edit_and_replay_or_dismiss(settings, db_url) -> None:
    with db.session_scope(db_url) as s:
        service.ingest_messages(s, None, ['{"text": 1}', '{"junk": true}'], "test")
    with db.session_scope(db_url) as s:
        first, second = sorted(d.id for d in service.list_dead_letters(s)[0])
    env = {"NEWSDESK_HOME": str(settings.home)}
    runner = CliRunner()
    still_bad = runner.invoke(cli, ["stream", "dead-letters", "--replay", str(first), "--payload", '{"text": 2}'],
                              env=env)
    assert still_bad.exit_code == 3 and "still invalid" in still_bad.output
    fixed = runner.invoke(cli, ["stream", "dead-letters", "--replay", str(first), "--payload",
                                '{"id": "e1", "text": "$XYZ fixed by hand"}'], env=env)
    assert fixed.exit_code == 0 and "replayed as message" in fixed.output
    dismissed = runner.invoke(cli, ["stream", "dead-letters", "--dismiss", str(second), "--note", "junk"], env=env)
    assert dismissed.exit_code == 0 and "dismissed" in dismissed.output
    assert runner.invoke(cli, ["stream", "dead-letters", "--dismiss", str(second)], env=env).exit_code == 5
    both = runner.invoke(cli, ["stream", "dead-letters", "--dismiss", str(second), "--replay-all"], env=env)
    assert both.exit_code == 3
    with db.session_scope(db_url) as s:
        rows = {d.id: d for d in service.list_dead_letters(s)[0]}
        assert rows[first].status == "replayed" and rows[first].original_payload == '{"text": 1}'
        assert rows[first].closed_by == "cli" and rows[second].status == "dismissed"
        assert rows[second].reason.endswith("(dismissed: junk)")
        assert [m.text for m in service.latest_messages(s)] == ["$XYZ fixed by hand"]


def test_replay_paces_by_message_time(settings, db_url, tmp_path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in burst_payloads(neutral=3, negative=0, step_s=60)))
    report = replay_file(settings, str(path), speed=600, classifier=FakeClassifier(), progress=False)
    assert report.ingest.stored == 3 and report.ingest.classified == 3
    assert 0.18 <= report.seconds < 5  # 120 s of stream at 600x is 0.2 s
