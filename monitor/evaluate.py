"""Rule evaluation against the database: window statistics per ticker -> rules -> lifecycle transitions."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsdesk.db import utcnow
from monitor import lifecycle, rules
from monitor.tables import Alert, AlertRule, AlertState, Message, MessageTicker

log = logging.getLogger(__name__)

LIVE_SKEW = timedelta(days=1)  # a stream clock this close to the wall clock means we are live


def window_stats(session: Session, ticker: str, params: dict, baseline: str, now: datetime) -> rules.WindowStats:
    """Messages about `ticker` in (now - window, now] and the baseline's per-window bucket counts."""
    window = timedelta(minutes=params["window_minutes"])
    start = now - window
    rows = session.execute(
        select(Message.id, Message.text, MessageTicker.label, MessageTicker.ts)
        .join(Message, Message.id == MessageTicker.message_id)
        .where(MessageTicker.ticker == ticker, MessageTicker.ts > start, MessageTicker.ts <= now)
    ).all()
    stats = rules.WindowStats(ticker, start, now, [rules.WindowMessage(*r) for r in rows])
    if baseline != "none":
        n_buckets = max(1, int(params["baseline_days"] * 1440 // params["window_minutes"]))
        base_start = start - window * n_buckets
        query = select(MessageTicker.ts).where(MessageTicker.ticker == ticker, MessageTicker.ts > base_start,
                                               MessageTicker.ts <= start)
        if baseline == "negative":
            query = query.where(MessageTicker.label == "negative")
        counts = [0] * n_buckets
        seconds = window.total_seconds()
        for (ts,) in session.execute(query):
            idx = int((ts - base_start).total_seconds() // seconds)
            counts[min(max(idx, 0), n_buckets - 1)] += 1
        stats.baseline_counts = counts
    return stats


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
    transitions = []
    for rule in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)):
        try:
            params = rules.validate_params(rule.kind, rule.params)
        except Exception:  # a rule edited into an invalid state must not stop the others
            log.exception("rule %s has invalid parameters; skipped", rule.id)
            continue
        scope = {t.upper() for t in (rule.tickers or [])}
        for ticker in sorted(targets):
            if scope and ticker not in scope:
                continue
            stats = window_stats(session, ticker, params, rules.baseline_of(rule.kind), now)
            result = rules.evaluate(rule.kind, params, stats)
            transition = lifecycle.apply_result(session, rule, ticker, result, now)
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
