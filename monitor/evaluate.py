"""Rule evaluation against the database: window statistics per ticker -> rules -> lifecycle transitions."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor import lifecycle, rules
from monitor.tables import Alert, AlertRule, AlertState, Message, MessageTicker
from newsdesk.db import utcnow

log = logging.getLogger(__name__)

LIVE_SKEW = timedelta(days=1)  # a stream clock this close to the wall clock means we are live


Row = tuple[int, datetime, Any, Any]  # message id, ts, sentiment label, topic (None without a topic head)


def ticker_rows(session: Session, ticker: str, since: datetime, now: datetime) -> list[Row]:
    """(message id, ts, label, topic) of every message about `ticker` in (since, now], oldest first."""
    return [tuple(r) for r in session.execute(
        select(MessageTicker.message_id, MessageTicker.ts, MessageTicker.label, MessageTicker.topic)
        .where(MessageTicker.ticker == ticker, MessageTicker.ts > since, MessageTicker.ts <= now)
        .order_by(MessageTicker.ts))]


def window_stats(ticker: str, rows: list[Row], params: dict, baseline: str, now: datetime,
                 texts: dict[int, str], topic: str | None = None) -> rules.WindowStats:
    """The rule's view of `rows`: messages in (now - window, now] and per-window bucket counts before that.

    With `topic`, only messages of that topic count, in the window and in the baseline.
    """
    if topic is not None:
        rows = [r for r in rows if r[3] == topic]
    window = timedelta(minutes=params["window_minutes"])
    start = now - window
    stats = rules.WindowStats(ticker, start, now, [rules.WindowMessage(mid, texts.get(mid, ""), label, ts)
                                                   for mid, ts, label, _ in rows if start < ts <= now], topic=topic)
    if baseline != "none":
        n_buckets = max(1, int(params["baseline_days"] * 1440 // params["window_minutes"]))
        base_start = start - window * n_buckets
        counts = [0] * n_buckets
        seconds = window.total_seconds()
        for _, ts, label, _ in rows:
            if base_start < ts <= start and (baseline == "all" or label == "negative"):
                idx = int((ts - base_start).total_seconds() // seconds)
                counts[min(max(idx, 0), n_buckets - 1)] += 1
        stats.baseline_counts = counts
    return stats


def _span(params: dict) -> timedelta:
    """How far back a rule looks: its window plus its baseline."""
    return timedelta(minutes=params["window_minutes"]) + timedelta(days=params.get("baseline_days", 0))


def stream_clock(session: Session) -> datetime:
    """Now for the rules: the wall clock when messages are live, else the newest message time (a replay)."""
    newest = session.scalar(select(func.max(Message.ts)))
    wall = utcnow()
    if newest is None or wall - newest < LIVE_SKEW:
        return wall if newest is None or newest <= wall else newest
    return newest


def evaluate_tickers(session: Session, tickers: Iterable[str], now: datetime | None = None,
                     *, include_firing: bool = True) -> list[lifecycle.Transition]:
    """Evaluate every enabled rule for `tickers` (plus tickers with firing alerts) at stream time `now`."""
    now = now or stream_clock(session)
    targets = set(tickers)
    if include_firing:
        targets |= set(session.scalars(select(Alert.ticker).where(Alert.state == AlertState.FIRING.value)))
    if not targets:
        return []
    active = []
    for rule in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)):
        try:
            active.append((rule, rules.validate_params(rule.kind, rule.params),
                           {t.upper() for t in (rule.tickers or [])}, list(rule.topics or [])))
        except Exception:  # a rule edited into an invalid state must not stop the others
            log.exception("rule %s has invalid parameters; skipped", rule.id)
    if not active:
        return []
    span = max(_span(params) for _, params, _, _ in active)
    text_window = max((timedelta(minutes=p["window_minutes"]) for r, p, _, _ in active
                       if r.kind in ("keyword", "negative_burst")), default=None)
    firing = set(session.scalars(select(Alert.active_fingerprint).where(Alert.active_fingerprint.is_not(None))))
    transitions = []
    for ticker in sorted(targets):
        scoped = [(r, p, topics) for r, p, scope, topics in active if not scope or ticker in scope]
        if not scoped:
            continue
        rows = ticker_rows(session, ticker, now - span, now)
        texts: dict[int, str] = {}
        if text_window is not None:
            ids = [mid for mid, ts, _, _ in rows if ts > now - text_window]
            texts = dict(session.execute(select(Message.id, Message.text).where(Message.id.in_(ids))).all()) \
                if ids else {}
        for rule, params, topics in scoped:
            for topic in topics or [None]:  # a topic-scoped rule: one evaluation (and alert) per topic
                stats = window_stats(ticker, rows, params, rules.baseline_of(rule.kind), now, texts, topic)
                result = rules.evaluate(rule.kind, params, stats)
                if not result.met and lifecycle.fingerprint(rule.id, ticker, topic) not in firing:
                    continue  # nothing firing to resolve: skip the lookup
                transition = lifecycle.apply_result(session, rule, ticker, result, now, topic=topic)
                if transition is not None:
                    transitions.append(transition)
    if transitions:
        fired = sum(1 for t in transitions if t.event == "fired")
        resolved = sum(1 for t in transitions if t.event == "resolved")
        if fired or resolved:
            log.info("rules at %s: %d fired, %d resolved", now.isoformat(), fired, resolved)
    return transitions


def resolve_rule_alerts(session: Session, rule_id: int, now: datetime | None = None) -> int:
    """Resolve the firing alerts of a deleted or disabled rule; returns how many."""
    now = now or stream_clock(session)
    alerts = session.scalars(select(Alert).where(Alert.rule_id == rule_id, Alert.state == AlertState.FIRING.value))
    n = 0
    for alert in alerts:
        alert.state, alert.resolved_at, alert.active_fingerprint = AlertState.RESOLVED.value, now, None
        n += 1
    return n
