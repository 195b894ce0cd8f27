"""`newsdesk stream dead-letters --replay-all` and `newsdesk alerts notifications [--retry]` on a real SQLite home."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from monitor import service
from monitor.tables import DeadLetter, Message, Notification
from newsdesk import db
from newsdesk.cli import cli


def _home(tmp_path: Path) -> tuple[CliRunner, str]:
    runner = CliRunner()
    assert runner.invoke(cli, ["--home", str(tmp_path), "init"]).exit_code == 0
    return runner, f"sqlite:///{tmp_path / 'newsdesk.db'}"


def test_replay_all_dead_letters_by_reason(tmp_path: Path) -> None:
    runner, url = _home(tmp_path)
    with db.session_scope(url) as s:
        for i in range(3):
            service.add_dead_letter(s, "stream", "process", "failed 6 deliveries (limit 5)",
                                    f'{{"id": "m{i}", "text": "$XYZ numbers {i}"}}')
        service.add_dead_letter(s, "stream", "validate", "missing field 'text'", '{"id": "x"}')
    result = runner.invoke(cli, ["--home", str(tmp_path), "stream", "dead-letters", "--replay-all", "--reason",
                                 "deliveries"])
    assert result.exit_code == 0, result.output
    assert "Replayed 3 dead letters (0 still invalid" in result.output
    with db.session_scope(url) as s:
        assert len(s.scalars(select(Message)).all()) == 3
        assert s.scalars(select(DeadLetter.status).order_by(DeadLetter.id)).all() == ["replayed"] * 3 + ["open"]
    bad = runner.invoke(cli, ["--home", str(tmp_path), "stream", "dead-letters", "--reason", "x"])
    assert bad.exit_code == 3 and bad.output.startswith("Error: --reason") and "Traceback" not in bad.output


def test_notifications_listed_and_retried(tmp_path: Path) -> None:
    runner, url = _home(tmp_path)
    with db.session_scope(url) as s:
        s.add(Notification(alert_id=1, event="firing", url="http://127.0.0.1:9/x", payload={}, status="failed",
                           attempts=[{"status_code": None, "error": "ConnectionRefusedError: refused"}]))
    listed = runner.invoke(cli, ["--home", str(tmp_path), "alerts", "notifications"])
    assert listed.exit_code == 0 and "ConnectionRefusedError" in listed.output
    assert "1 of 1 undelivered" in listed.output
    retried = runner.invoke(cli, ["--home", str(tmp_path), "alerts", "notifications", "--retry"])
    assert retried.exit_code == 0 and retried.output.startswith("1 notifications queued")
    with db.session_scope(url) as s:
        row = s.scalars(select(Notification)).one()
        assert row.status == "pending" and row.attempts[-1]["retry"] == "cli"
