"""Alert lifecycle like Alertmanager: fingerprint per rule + ticker (+ topic), firing -> resolved, silences, repeat,
evidence.

Decisions use the stream clock (message timestamps), so a replayed history alerts as it would have live; silences
and acknowledgements are operator actions and use the wall clock. Notifications are written as outbox rows in the
same transaction as the transition (`notify.deliver_pending` sends them), so a crash never loses or doubles one.
Each transition is a conditional UPDATE (resolve: WHERE state = 'firing'; first notification: WHERE
notify_count = 0; repeat: WHERE last_notified_at = the value read), and each outbox row carries a unique key per
transition, so two consumers evaluating the same alert at once produce exactly one notification.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from monitor.rules import RuleResult
from monitor.tables import Alert, AlertEvidence, AlertRule, Notification, Silence
from monitor.vocabulary import AlertState
from newsdesk.db import utcnow

log = logging.getLogger(__name__)

MAX_EVIDENCE_PER_ALERT = 200
# An alert resolves only once its rule has been unmet this long in stream time (like Prometheus' keep_firing_for):
# rules run at every message's time, and a count hovering at its threshold must not fire, resolve and fire again.
KEEP_FIRING_FOR = timedelta(minutes=15)
MATCHER_KEYS = ("ticker", "topic", "rule_id", "kind", "severity", "rule_name")


@dataclass
class Transition:
    """What an evaluation did to an alert: fired, updated, repeated or resolved."""

    alert_id: int
    event: str
    ticker: str
    rule_id: int
    topic: str | None = None


def fingerprint(rule_id: int, ticker: str, topic: str | None = None) -> str:
    """Stable identity of "this rule for this ticker (within this topic)" (the deduplication key).

    Without a topic it is the same as before topics existed, so alerts firing then keep their identity.
    """
    key = f"{rule_id}:{ticker}" if topic is None else f"{rule_id}:{ticker}:topic:{topic}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def group_key(ticker: str, topic: str | None) -> str:
    """Alertmanager's group_by [ticker, topic]: alerts of one ticker within one topic are one group."""
    return f"{ticker} / {topic}" if topic else ticker


def alert_labels(alert: Alert) -> dict[str, Any]:
    return {"ticker": alert.ticker, "topic": alert.topic, "rule_id": alert.rule_id, "kind": alert.kind,
            "severity": alert.severity, "rule_name": alert.rule_name}


def silence_matches(matchers: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Every matcher equals the alert's label (strings compared case-insensitively)."""
    for key, want in matchers.items():
        have = labels.get(key)
        if isinstance(want, str) and isinstance(have, str):
            if want.lower() != have.lower():
                return False
        elif str(want) != str(have):
            return False
    return bool(matchers)


def active_silence(session: Session, alert: Alert, now: datetime | None = None) -> Silence | None:
    """The first silence active now (wall clock) whose matchers all match the alert."""
    now = now or utcnow()
    rows = session.scalars(select(Silence).where(Silence.expired_at.is_(None), Silence.starts_at <= now,
                                                 Silence.ends_at > now))
    labels = alert_labels(alert)
    return next((s for s in rows if silence_matches(s.matchers or {}, labels)), None)


def apply_result(session: Session, rule: AlertRule, ticker: str, result: RuleResult,
                 now: datetime, *, topic: str | None = None) -> Transition | None:
    """Move the alert of (rule, ticker, topic) according to the rule's result at stream time `now`."""
    fp = fingerprint(rule.id, ticker, topic)
    alert = session.scalar(select(Alert).where(Alert.active_fingerprint == fp))
    if not result.met:
        if alert is None:
            return None
        if now - alert.last_eval_at < KEEP_FIRING_FOR:
            return None  # unmet only briefly (a window edge): keep firing rather than flap resolve -> fire
        if not _transition(session, alert, (Alert.state == AlertState.FIRING.value) & (Alert.active_fingerprint == fp),
                           state=AlertState.RESOLVED.value, resolved_at=now, last_eval_at=now,
                           active_fingerprint=None):
            return None  # another consumer resolved it a moment ago
        if alert.notify_count > 0:
            _queue(session, alert, "resolved", f"{alert.id}:resolved")
        return Transition(alert.id, "resolved", ticker, rule.id, topic)
    event = "updated"
    if alert is None:
        alert, created = _create(session, rule, ticker, topic, fp, result, now)
        event = "fired" if created else "updated"
    alert.summary = result.summary
    alert.values = result.values
    alert.last_eval_at = max(alert.last_eval_at, now)
    add_evidence(session, alert.id, result.evidence_ids)
    silence = active_silence(session, alert)
    alert.silence_id = silence.id if silence else None
    if silence is None and alert.acknowledged_at is None:
        if alert.notify_count == 0:
            if _transition(session, alert, Alert.notify_count == 0, last_notified_at=now):
                _queue(session, alert, "firing", f"{alert.id}:firing")
        elif alert.last_notified_at and now - alert.last_notified_at >= timedelta(seconds=rule.repeat_interval_s):
            previous = alert.last_notified_at
            if _transition(session, alert, Alert.last_notified_at == previous, last_notified_at=now):
                _queue(session, alert, "repeat", f"{alert.id}:repeat:{previous.isoformat()}")
                event = "repeated"
    return Transition(alert.id, event, ticker, rule.id, topic)


def _transition(session: Session, alert: Alert, condition: Any, **values: Any) -> bool:
    """UPDATE the alert with `values` only if `condition` still holds in the database; True if it did.

    On PostgreSQL a concurrent transition of the same row waits for the other transaction, then re-checks the
    condition, so exactly one of two consumers wins.
    """
    session.flush()
    done = session.execute(update(Alert).where(Alert.id == alert.id, condition).values(**values)
                           .execution_options(synchronize_session=False)).rowcount
    if done:
        for key, value in values.items():
            set_committed_value(alert, key, value)
    else:
        session.refresh(alert)
    return bool(done)


def _create(session: Session, rule: AlertRule, ticker: str, topic: str | None, fp: str, result: RuleResult,
            now: datetime) -> tuple[Alert, bool]:
    """Insert a firing alert; if another worker just did, return theirs (the unique active fingerprint decides)."""
    alert = Alert(fingerprint=fp, active_fingerprint=fp, rule_id=rule.id, rule_name=rule.name, kind=rule.kind,
                  ticker=ticker, topic=topic, state=AlertState.FIRING.value, severity=rule.severity,
                  summary=result.summary, values=result.values, started_at=now, last_eval_at=now, ack_note="",
                  notify_count=0)
    try:
        with session.begin_nested():
            session.add(alert)
            session.flush()
        return alert, True
    except IntegrityError:
        existing = session.scalar(select(Alert).where(Alert.active_fingerprint == fp))
        if existing is None:
            raise
        return existing, False


def add_evidence(session: Session, alert_id: int, message_ids: list[int]) -> int:
    """Link messages to the alert (each once, at most MAX_EVIDENCE_PER_ALERT); returns how many were added."""
    if not message_ids:
        return 0
    have = set(session.scalars(select(AlertEvidence.message_id).where(AlertEvidence.alert_id == alert_id)))
    room = MAX_EVIDENCE_PER_ALERT - len(have)
    new = [m for m in dict.fromkeys(message_ids) if m not in have][:max(room, 0)]
    session.add_all(AlertEvidence(alert_id=alert_id, message_id=m) for m in new)
    return len(new)


def _queue(session: Session, alert: Alert, event: str, key: str) -> bool:
    """Write an outbox row with the transition's unique `key` (a second one for the same transition is dropped);
    the delivery job fans it out to every configured webhook URL. Returns whether it was written."""
    session.flush()
    row = Notification(alert_id=alert.id, event=event, url="", status="pending", attempts=[], dedup_key=key,
                       next_attempt_at=utcnow(), payload=notification_payload(session, alert, event))
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        log.info("notification %s was already queued by another consumer", key)
        return False
    session.execute(update(Alert).where(Alert.id == alert.id).values(notify_count=Alert.notify_count + 1)
                    .execution_options(synchronize_session=False))
    session.refresh(alert, ["notify_count"])
    return True


def notification_payload(session: Session, alert: Alert, event: str) -> dict[str, Any]:
    """The JSON a webhook receives: the event, the alert, and its (ticker, topic) group of firing alerts."""
    topic_match = Alert.topic.is_(None) if alert.topic is None else Alert.topic == alert.topic
    group = session.scalars(select(Alert.id).where(Alert.ticker == alert.ticker, topic_match,
                                                   Alert.state == AlertState.FIRING.value)).all()
    return {"event": event, "group_key": group_key(alert.ticker, alert.topic), "group_firing": sorted(set(group)),
            "alert": {"id": alert.id, "fingerprint": alert.fingerprint, "rule_id": alert.rule_id,
                      "rule": alert.rule_name, "kind": alert.kind, "ticker": alert.ticker, "topic": alert.topic,
                      "state": alert.state,
                      "severity": alert.severity, "summary": alert.summary, "values": alert.values,
                      "started_at": _iso(alert.started_at), "resolved_at": _iso(alert.resolved_at)}}


def acknowledge(alert: Alert, actor: str, note: str = "") -> Alert:
    """Record who acknowledged the alert, when (wall clock) and why; acknowledged alerts are not repeated."""
    alert.acknowledged_by = actor
    alert.acknowledged_at = utcnow()
    alert.ack_note = note
    alert.updated_at = utcnow()
    return alert


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None
