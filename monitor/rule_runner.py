"""Runs the alert rules over each ticker's message windows: window statistics -> rules -> lifecycle transitions.

Order independence (`advance`): the rules are evaluated on stream time, at every committed message's own time in
time order, up to a watermark below which every message is committed (the stream consumers compute it from what
is still in flight in Redis). A cursor row (`rule_cursor`, locked while it moves) records how far evaluation has
gone, so each point is evaluated once, by one process, whatever the consumer interleaving: the same input yields
the same alerts. A message older than the cursor (late) joins the past: it counts in later windows only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor import lifecycle, rules
from monitor.tables import Alert, AlertRule, Message, MessageTicker, RuleCursor
from monitor.vocabulary import AlertState, RuleKind, normalise_ticker
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput

log = logging.getLogger(__name__)

LIVE_SKEW = timedelta(days=1)  # a stream clock this close to the wall clock means we are live


def ticker_rows(session: Session, ticker: str, since: datetime, now: datetime) -> list[tuple[int, datetime, Any]]:
    """(message id, ts, label) of every message about `ticker` in (since, now], oldest first."""
    return [tuple(r) for r in session.execute(
        select(MessageTicker.message_id, MessageTicker.ts, MessageTicker.label)
        .where(MessageTicker.ticker == ticker, MessageTicker.ts > since, MessageTicker.ts <= now)
        .order_by(MessageTicker.ts))]


def window_stats(ticker: str, rows: list[tuple[int, datetime, Any]], params: dict, baseline: str, now: datetime,
                 texts: dict[int, str]) -> rules.WindowStats:
    """The rule's view of `rows`: messages in (now - window, now] and per-window bucket counts before that."""
    window = timedelta(minutes=params["window_minutes"])
    start = now - window
    stats = rules.WindowStats(ticker, start, now, [rules.WindowMessage(mid, texts.get(mid, ""), label, ts)
                                                   for mid, ts, label in rows if start < ts <= now])
    if baseline != "none":
        n_buckets = max(1, int(params["baseline_days"] * 1440 // params["window_minutes"]))
        base_start = start - window * n_buckets
        counts = [0] * n_buckets
        seconds = window.total_seconds()
        for _, ts, label in rows:
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


class ActiveRule(NamedTuple):
    """An enabled rule with its validated parameters and the tickers it is scoped to (empty: every ticker)."""

    rule: AlertRule
    params: dict[str, Any]
    scope: frozenset[str]


def evaluate_tickers(session: Session, tickers: Iterable[str], now: datetime | None = None,
                     *, include_firing: bool = True) -> list[lifecycle.Transition]:
    """Evaluate every enabled rule for `tickers` (plus tickers with firing alerts) at stream time `now`."""
    now = now or stream_clock(session)
    targets = _targets(session, tickers, include_firing)
    active = active_rules(session) if targets else []
    if not active:
        return []
    span = max(_span(a.params) for a in active)
    text_window = _text_window(active)
    firing = set(session.scalars(select(Alert.active_fingerprint).where(Alert.active_fingerprint.is_not(None))))
    transitions: list[lifecycle.Transition] = []
    for ticker in sorted(targets):
        scoped = [a for a in active if not a.scope or ticker in a.scope]
        if scoped:
            transitions += _evaluate_ticker(session, ticker, scoped, now, span, text_window, firing)
    _log_transitions(transitions, now)
    return transitions


def _targets(session: Session, tickers: Iterable[str], include_firing: bool) -> set[str]:
    """The tickers to evaluate: those given, plus (with `include_firing`) every ticker with a firing alert."""
    targets = set(tickers)
    if include_firing:
        targets |= set(session.scalars(select(Alert.ticker).where(Alert.state == AlertState.FIRING.value)))
    return targets


def active_rules(session: Session) -> list[ActiveRule]:
    """Enabled rules in id order; one whose stored parameters no longer validate is logged and skipped."""
    active = []
    for rule in session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)):
        try:
            params = rules.validate_params(rule.kind, rule.params)
        except (InvalidInput, TypeError, ValueError, AttributeError):  # an invalid stored rule must not stop the rest
            log.exception("rule %s has invalid parameters; skipped", rule.id)
            continue
        active.append(ActiveRule(rule, params, frozenset(normalise_ticker(t) for t in rule.tickers or [])))
    return active


def _text_window(active: list[ActiveRule]) -> timedelta | None:
    """How far back message texts are needed (only keyword and negative-burst rules read them)."""
    return max((timedelta(minutes=a.params["window_minutes"]) for a in active
                if a.rule.kind in (RuleKind.KEYWORD, RuleKind.NEGATIVE_BURST)), default=None)


def _texts(session: Session, rows: list[tuple[int, datetime, Any]], since: datetime) -> dict[int, str]:
    """message id -> text of the rows newer than `since`."""
    ids = [mid for mid, ts, _ in rows if ts > since]
    return dict(session.execute(select(Message.id, Message.text).where(Message.id.in_(ids))).all()) if ids else {}


def _evaluate_ticker(session: Session, ticker: str, scoped: list[ActiveRule], now: datetime, span: timedelta,
                     text_window: timedelta | None, firing: set[str]) -> list[lifecycle.Transition]:
    """Run each rule scoped to `ticker` over its window and apply what changed (fire, repeat, resolve)."""
    rows = ticker_rows(session, ticker, now - span, now)
    texts = _texts(session, rows, now - text_window) if text_window is not None else {}
    transitions = []
    for rule, params, _ in scoped:
        result = rules.evaluate(rule.kind, params, window_stats(ticker, rows, params, rules.baseline_of(rule.kind),
                                                                now, texts))
        if not result.met and lifecycle.fingerprint(rule.id, ticker) not in firing:
            continue  # nothing firing to resolve: skip the lookup
        transition = lifecycle.apply_result(session, rule, ticker, result, now)
        if transition is not None:
            transitions.append(transition)
    return transitions


def _log_transitions(transitions: list[lifecycle.Transition], now: datetime) -> None:
    fired = sum(1 for t in transitions if t.event == "fired")
    resolved = sum(1 for t in transitions if t.event == "resolved")
    if fired or resolved:
        log.info("rules at %s: %d fired, %d resolved", now.isoformat(), fired, resolved)


def lock_cursor(session: Session) -> RuleCursor:
    """The rule cursor row, locked until the transaction ends (FOR UPDATE on PostgreSQL); created if missing."""
    cursor = session.scalar(select(RuleCursor).where(RuleCursor.id == 1).with_for_update())
    if cursor is None:
        from sqlalchemy.exc import IntegrityError

        try:
            with session.begin_nested():
                session.add(RuleCursor(id=1, evaluated_to=None))
                session.flush()
        except IntegrityError:
            pass  # created concurrently
        cursor = session.scalar(select(RuleCursor).where(RuleCursor.id == 1).with_for_update())
    return cursor


def advance(session: Session, watermark: datetime | None = None, *, inclusive: bool = True,
            late: Iterable[str] = ()) -> list[lifecycle.Transition]:
    """Evaluate the rules at every message time after the cursor up to `watermark` (default: the newest stored
    message), oldest first, then move the cursor there. `inclusive=False` leaves messages at exactly `watermark`
    for later (something at that time is still in flight).

    At each point the rules run for the tickers of the messages at that time, and the rules that are firing for
    other tickers run too (so an alert resolves at the same stream time in every run). Tickers in `late` (just
    stored) that got no point (their messages are older than the cursor) are evaluated at the cursor.
    """
    cursor = lock_cursor(session)
    session.flush()
    if watermark is None:
        watermark = session.scalar(select(func.max(MessageTicker.ts)))
        if watermark is None:
            return []
    start = cursor.evaluated_to
    query = select(MessageTicker.ts, MessageTicker.ticker).where(
        MessageTicker.ts <= watermark if inclusive else MessageTicker.ts < watermark)
    if start is not None:
        query = query.where(MessageTicker.ts > start)
    points: dict[datetime, set[str]] = {}
    for ts, ticker in session.execute(query.order_by(MessageTicker.ts)):
        points.setdefault(ts, set()).add(ticker)
    late = set(late) - {t for tickers in points.values() for t in tickers}
    transitions: list[lifecycle.Transition] = []
    if late and start is not None:  # a late message joins the past: evaluated at the cursor, never reopening it
        transitions += evaluate_tickers(session, late, start, include_firing=False)
    if not points:
        return transitions
    active = active_rules(session)
    if active:
        transitions += _evaluate_points(session, active, sorted(points.items()))
    cursor.evaluated_to = max(points)
    cursor.updated_at = utcnow()
    fired = sum(1 for t in transitions if t.event == "fired")
    resolved = sum(1 for t in transitions if t.event == "resolved")
    if fired or resolved:
        log.info("rules over %d points up to %s: %d fired, %d resolved", len(points), max(points).isoformat(),
                 fired, resolved)
    return transitions


class _Walk:
    """State of one walk over the points: which rules fire for which ticker, and when each was last met."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.firing: dict[str, set[int]] = {}  # ticker -> ids of rules firing for it
        self.last_met: dict[tuple[str, int], datetime] = {}  # (ticker, rule id) -> last stream time it was met
        self.moved: set[tuple[str, int]] = set()  # last_met moved in memory only (written by `finish`)
        self.transitions: list[lifecycle.Transition] = []
        for ticker, rule_id, met_at in session.execute(select(Alert.ticker, Alert.rule_id, Alert.last_eval_at)
                                                       .where(Alert.state == AlertState.FIRING.value)):
            self.firing.setdefault(ticker, set()).add(rule_id)
            self.last_met[(ticker, rule_id)] = met_at

    def step(self, rule: AlertRule, ticker: str, result: rules.RuleResult, now: datetime, own: bool) -> None:
        """Apply one evaluation; at another ticker's point a firing rule that is still met only moves its last-met
        time, and an unmet one resolves once it has been unmet for the lifecycle's KEEP_FIRING_FOR."""
        key = (ticker, rule.id)
        if not own:
            if result.met:
                self.last_met[key] = now
                self.moved.add(key)
                return
            if now - self.last_met.get(key, now) < lifecycle.KEEP_FIRING_FOR:
                return
        elif result.met:
            self.last_met[key] = now
        if key in self.moved:  # the lifecycle reads the last-met time from the alert: write it first
            self._write(key)
        transition = lifecycle.apply_result(self.session, rule, ticker, result, now)
        if transition is None:
            return
        self.transitions.append(transition)
        if transition.event == "resolved":
            self.firing.get(ticker, set()).discard(rule.id)
            if not self.firing.get(ticker):
                self.firing.pop(ticker, None)
        elif result.met:
            self.firing.setdefault(ticker, set()).add(rule.id)

    def _write(self, key: tuple[str, int]) -> None:
        ticker, rule_id = key
        alert = self.session.scalar(select(Alert).where(Alert.active_fingerprint == lifecycle.fingerprint(rule_id,
                                                                                                         ticker)))
        if alert is not None and alert.last_eval_at < self.last_met[key]:
            alert.last_eval_at = self.last_met[key]
        self.moved.discard(key)

    def finish(self) -> list[lifecycle.Transition]:
        for key in list(self.moved):
            self._write(key)
        return self.transitions


def _evaluate_points(session: Session, active: list[ActiveRule],
                     points: list[tuple[datetime, set[str]]]) -> list[lifecycle.Transition]:
    """Walk the points in time order; each ticker's rows are read once for the whole range.

    At a ticker's own points every rule runs through the lifecycle; at other points only its firing rules run,
    without queries unless one resolves (`_Walk.step`): what running the lifecycle at every point would do.
    """
    first, last = points[0][0], points[-1][0]
    span = max(_span(a.params) for a in active)
    text_window = _text_window(active)
    walk = _Walk(session)
    tickers = set(walk.firing) | {t for _, ts in points for t in ts}
    rows: dict[str, list] = {t: ticker_rows(session, t, first - span, last) for t in tickers}
    texts: dict[int, str] = {}
    if text_window is not None:
        ids = [mid for t in tickers for mid, ts, _ in rows[t] if ts > first - text_window]
        for chunk in range(0, len(ids), 1000):
            part = ids[chunk:chunk + 1000]
            texts.update(session.execute(select(Message.id, Message.text).where(Message.id.in_(part))).all())
    for now, own in points:
        for ticker in sorted(own | set(walk.firing)):
            for rule, params, scope in active:
                firing = rule.id in walk.firing.get(ticker, ())
                if (scope and ticker not in scope) or (ticker not in own and not firing):
                    continue  # out of scope, or not this ticker's message and nothing firing to resolve
                stats = window_stats(ticker, rows[ticker], params, rules.baseline_of(rule.kind), now, texts)
                result = rules.evaluate(rule.kind, params, stats)
                if result.met or firing:
                    walk.step(rule, ticker, result, now, ticker in own)
    return walk.finish()


def resolve_rule_alerts(session: Session, rule_id: int, now: datetime | None = None) -> int:
    """Resolve the firing alerts of a deleted or disabled rule; returns how many."""
    now = now or stream_clock(session)
    alerts = session.scalars(select(Alert).where(Alert.rule_id == rule_id, Alert.state == AlertState.FIRING.value))
    n = 0
    for alert in alerts:
        alert.state, alert.resolved_at, alert.active_fingerprint = AlertState.RESOLVED.value, now, None
        n += 1
    return n
