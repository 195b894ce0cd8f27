"""The demo stream leaves an alert firing: real default rules over the replayed demo slice, no model needed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from monitor import service as monitor_service
from monitor.replay import replay_file
from monitor.rule_runner import evaluate_tickers, stream_clock
from monitor.tables import Alert
from newsdesk import db
from newsdesk.db import utcnow
from newsdesk.demo import DEMO_STREAM_END_AGO, DEMO_STREAM_LINES, _rebased_stream


def test_the_replayed_demo_stream_ends_with_a_firing_alert_that_stays(settings, db_url) -> None:
    with db.session_scope(db_url) as session:
        monitor_service.ensure_default_rules(session)
        monitor_service.ensure_default_watchlist(session)
    before = utcnow()
    stream = _rebased_stream(settings.home / "stream.jsonl.gz")
    after = utcnow()
    report = replay_file(settings, stream, to="direct", progress=False)
    assert report.read == DEMO_STREAM_LINES
    with db.session_scope(db_url) as session:
        clock = stream_clock(session)
        # the replay's own clock: its last message, placed DEMO_STREAM_END_AGO before the rebasing (at any load)
        assert before - DEMO_STREAM_END_AGO - timedelta(seconds=1) <= clock <= after - DEMO_STREAM_END_AGO
        # the worker's rule job re-evaluates firing tickers at the stream clock: the alert stays firing
        evaluate_tickers(session, ())
        firing = session.scalars(select(Alert).where(Alert.state == "firing")).all()
        resolved = session.scalars(select(Alert).where(Alert.state == "resolved")).all()
    assert [(a.ticker, a.rule_name) for a in firing] == [("FB", "Volume spike")]
    assert len(resolved) >= 10  # the earlier spikes of the month came and went
