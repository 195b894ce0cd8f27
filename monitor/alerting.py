"""Alerts, rules, silences and the watchlist as the UI and CLI see them: queries, edits, defaults."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from monitor import lifecycle, rule_runner, rules
from monitor.enrich import TICKER
from monitor.tables import Alert, AlertEvidence, AlertRule, Message, Notification, Silence, WatchlistEntry
from monitor.views import AlertDetail, AlertInfo, MessageInfo, RuleInfo, SilenceInfo, WatchInfo
from monitor.vocabulary import ALERT_STATES, SEVERITIES, AlertState, RuleKind, Severity, normalise_ticker
from newsdesk.db import utcnow
from newsdesk.errors import Conflict, InvalidInput, NotFound

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "Negative sentiment burst", "kind": RuleKind.NEGATIVE_BURST, "severity": Severity.CRITICAL, "params": {}},
    {"name": "Volume spike", "kind": RuleKind.VOLUME_SPIKE, "severity": Severity.WARNING, "params": {}},
    {"name": "Legal or bankruptcy news", "kind": RuleKind.KEYWORD, "severity": Severity.CRITICAL,
     "params": {"phrases": ["bankruptcy", "chapter 11", "SEC investigation", "fraud", "lawsuit", "class action",
                            "recall", "downgrade"], "sentiment": "negative", "min_count": 1}},
]


# Alerts -----------------------------------------------------------------------------------------


def list_alerts(session: Session, *, state: str | None = None, ticker: str | None = None, rule_id: int | None = None,
                since: datetime | None = None, limit: int = 50, offset: int = 0,
                topic: str | None = None) -> tuple[list[AlertInfo], int]:
    """Alerts, most recently started first, with the total matching count.

    `state` is firing | resolved | acknowledged | silenced (the last two are firing alerts with that mark);
    `topic` keeps the alerts of topic-scoped rules for that topic.
    """
    query = select(Alert)
    if state in (AlertState.FIRING, AlertState.RESOLVED):
        query = query.where(Alert.state == state)
    elif state == AlertState.ACKNOWLEDGED:
        query = query.where(Alert.state == AlertState.FIRING, Alert.acknowledged_at.is_not(None))
    elif state == AlertState.SILENCED:
        query = query.where(Alert.state == AlertState.FIRING, Alert.silence_id.is_not(None))
    elif state:
        raise InvalidInput(f"state must be one of {', '.join(ALERT_STATES)}", {"field": "state"})
    if ticker:
        query = query.where(Alert.ticker == normalise_ticker(ticker))
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if topic:
        query = query.where(Alert.topic == topic)
    if since is not None:
        query = query.where(Alert.updated_at >= since)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Alert.started_at.desc(), Alert.id.desc()).limit(limit).offset(offset))
    return [AlertInfo.of(a) for a in rows], total


def list_alert_groups(session: Session, state: str = "firing") -> dict[str, list[AlertInfo]]:
    """Alerts grouped per ticker and topic (Alertmanager's group_by: [ticker, topic]), keyed "XYZ" or "XYZ / topic"."""
    alerts, _ = list_alerts(session, state=state, limit=10_000)
    groups: dict[str, list[AlertInfo]] = {}
    for alert in alerts:
        groups.setdefault(lifecycle.group_key(alert.ticker, alert.topic), []).append(alert)
    return groups


def get_alert(session: Session, alert_id: int) -> AlertDetail:
    """One alert with its evidence messages and notification attempts.

    Raises:
        NotFound: no such alert.
    """
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    info = AlertInfo.of(alert)
    evidence = session.scalars(select(Message).join(AlertEvidence, AlertEvidence.message_id == Message.id)
                               .where(AlertEvidence.alert_id == alert_id).order_by(Message.ts))
    notes = session.scalars(select(Notification).where(Notification.alert_id == alert_id).order_by(Notification.id))
    return AlertDetail(**vars(info), evidence=[MessageInfo.of(m) for m in evidence],
                       notifications=[{"id": n.id, "event": n.event, "url": n.url, "status": n.status,
                                       "attempts": n.attempts, "created_at": n.created_at} for n in notes])


def acknowledge_alert(session: Session, alert_id: int, actor: str, note: str = "") -> AlertInfo:
    """Acknowledge an alert (who, when, note); it stays firing but is no longer re-notified.

    Raises:
        NotFound: no such alert.
        InvalidInput: empty actor.
    """
    if not actor or not actor.strip():
        raise InvalidInput("acknowledging needs a user name", {"field": "actor"})
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    lifecycle.acknowledge(alert, actor.strip(), note)
    session.flush()
    return AlertInfo.of(alert)


# Silences ---------------------------------------------------------------------------------------


def create_silence(session: Session, matchers: dict[str, Any], ends_at: datetime, actor: str, comment: str = "",
                   starts_at: datetime | None = None) -> SilenceInfo:
    """Silence alerts whose labels equal every matcher until `ends_at` (naive UTC).

    Raises:
        InvalidInput: no matcher, an unknown matcher key, or an end not after the start.
    """
    if not matchers:
        raise InvalidInput("a silence needs at least one matcher", {"field": "matchers"})
    unknown = set(matchers) - set(lifecycle.MATCHER_KEYS)
    if unknown:
        raise InvalidInput(f"unknown matcher {min(unknown)!r}; use {', '.join(lifecycle.MATCHER_KEYS)}",
                           {"field": "matchers"})
    now = utcnow()
    starts_at = starts_at or now
    if ends_at <= max(starts_at, now):
        raise InvalidInput("a silence must end in the future, after it starts", {"field": "ends_at"})
    clean = {k: (normalise_ticker(v) if k == "ticker" and isinstance(v, str) else v) for k, v in matchers.items()}
    silence = Silence(matchers=clean, starts_at=starts_at, ends_at=ends_at, created_by=actor, comment=comment,
                      created_at=now)
    session.add(silence)
    session.flush()
    if starts_at <= now:
        for alert in session.scalars(select(Alert).where(Alert.state == AlertState.FIRING.value,
                                                         Alert.silence_id.is_(None))):
            if lifecycle.silence_matches(clean, lifecycle.alert_labels(alert)):
                alert.silence_id = silence.id
                alert.updated_at = now
    return SilenceInfo.of(silence, now)


def describe_matchers(session: Session, matchers: dict[str, Any]) -> str:
    """What a silence matches, for people: "$XYZ · topic Legal · rule “Negative sentiment burst”" (not rule_id=3)."""
    parts = []
    for key, value in matchers.items():
        if key == "ticker":
            parts.append(f"${value}")
        elif key == "rule_id":
            name = session.scalar(select(AlertRule.name).where(AlertRule.id == value)) if isinstance(value, int) \
                else None
            parts.append(f"rule “{name}”" if name else f"rule #{value}")
        elif key == "rule_name":
            parts.append(f"rule “{value}”")
        else:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return " · ".join(parts)


def list_silences(session: Session, *, active_only: bool = False) -> list[SilenceInfo]:
    now = utcnow()
    out = [SilenceInfo.of(s, now) for s in session.scalars(select(Silence).order_by(Silence.id.desc()))]
    return [s for s in out if s.active] if active_only else out


def expire_silence(session: Session, silence_id: int, actor: str = "") -> SilenceInfo:
    """End a silence now; alerts it muted notify again at their next evaluation.

    Raises:
        NotFound: no such silence.
    """
    silence = session.get(Silence, silence_id)
    if silence is None:
        raise NotFound(f"silence {silence_id} not found")
    now = utcnow()
    silence.expired_at = silence.expired_at or now
    for alert in session.scalars(select(Alert).where(Alert.silence_id == silence_id)):
        alert.silence_id = None
        alert.updated_at = now
    session.flush()
    return SilenceInfo.of(silence, now)


# Rules ------------------------------------------------------------------------------------------


def list_rules(session: Session) -> list[RuleInfo]:
    return [RuleInfo.of(r) for r in session.scalars(select(AlertRule).order_by(AlertRule.id))]


def create_rule(session: Session, name: str, kind: str, params: dict[str, Any] | None = None, *,
                tickers: list[str] | tuple[str, ...] = (), severity: str = "warning",
                repeat_interval_s: int = 4 * 3600, enabled: bool = True,
                topics: list[str] | tuple[str, ...] = ()) -> RuleInfo:
    """Create a rule (parameters validated, defaults filled in), optionally scoped to tickers and to topics.

    Raises:
        InvalidInput: bad kind, parameter, ticker, topic or severity.
        Conflict: a rule with that name exists.
    """
    name = (name or "").strip()
    if not name or len(name) > 128:
        raise InvalidInput("a rule needs a name of 1-128 characters", {"field": "name"})
    if session.scalar(select(AlertRule.id).where(AlertRule.name == name)) is not None:
        raise Conflict(f"a rule named {name!r} exists")
    rule = AlertRule(name=name, kind=kind, params=rules.validate_params(kind, params),
                     tickers=_tickers(tickers), topics=rules.validate_topics(topics), severity=_severity(severity),
                     repeat_interval_s=_repeat(repeat_interval_s), enabled=bool(enabled))
    session.add(rule)
    session.flush()
    return RuleInfo.of(rule)


def update_rule(session: Session, rule_id: int, **changes: Any) -> RuleInfo:
    """Change a rule's name, params (merged over the current ones), tickers, topics, severity, repeat or enabled.

    Raises:
        NotFound: no such rule.
        InvalidInput: an unknown field or a bad value.
    """
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    allowed = {"name", "params", "tickers", "topics", "severity", "repeat_interval_s", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot change {min(unknown)!r} of a rule", {"field": min(unknown)})
    if "name" in changes:
        name = str(changes["name"] or "").strip()
        if not name or len(name) > 128:
            raise InvalidInput("a rule needs a name of 1-128 characters", {"field": "name"})
        rule.name = name
    if "params" in changes:
        rule.params = rules.validate_params(rule.kind, {**(rule.params or {}), **(changes["params"] or {})})
    if "tickers" in changes:
        rule.tickers = _tickers(changes["tickers"] or ())
    if "topics" in changes:
        topics = rules.validate_topics(changes["topics"])
        if topics != list(rule.topics or []):
            rule_runner.resolve_rule_alerts(session, rule.id)  # a new scope starts its alerts afresh
        rule.topics = topics
    if "severity" in changes:
        rule.severity = _severity(changes["severity"])
    if "repeat_interval_s" in changes:
        rule.repeat_interval_s = _repeat(changes["repeat_interval_s"])
    if "enabled" in changes:
        rule.enabled = bool(changes["enabled"])
        if not rule.enabled:
            rule_runner.resolve_rule_alerts(session, rule.id)
    rule.updated_at = utcnow()
    session.flush()
    return RuleInfo.of(rule)


def delete_rule(session: Session, rule_id: int) -> None:
    """Delete a rule; its firing alerts are resolved (their history stays).

    Raises:
        NotFound: no such rule.
    """
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound(f"rule {rule_id} not found")
    rule_runner.resolve_rule_alerts(session, rule_id)
    session.delete(rule)
    session.flush()


def ensure_default_rules(session: Session) -> int:
    """Create the default rules that do not exist yet (by name); returns how many were created."""
    existing = set(session.scalars(select(AlertRule.name)))
    created = 0
    for spec in DEFAULT_RULES:
        if spec["name"] not in existing:
            create_rule(session, spec["name"], spec["kind"], spec["params"], severity=spec["severity"])
            created += 1
    return created


def _tickers(values: Any) -> list[str]:
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    out = sorted({normalise_ticker(v) for v in values if str(v).strip()})
    bad = [t for t in out if not TICKER.match(t)]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a ticker symbol", {"field": "tickers"})
    return out


def _severity(value: Any) -> str:
    if value not in SEVERITIES:
        raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}", {"field": "severity"})
    return value


def _repeat(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= 30 * 86400:
        raise InvalidInput("repeat_interval_s must be an integer of seconds between 60 and 2592000",
                           {"field": "repeat_interval_s"})
    return value


# Watchlist --------------------------------------------------------------------------------------


def list_watchlist(session: Session) -> list[WatchInfo]:
    return [WatchInfo.of(w) for w in session.scalars(select(WatchlistEntry).order_by(WatchlistEntry.ticker))]


def upsert_watch(session: Session, ticker: str, name: str = "", aliases: list[str] | tuple[str, ...] = (),
                 active: bool = True) -> WatchInfo:
    """Add or change a watched ticker and its aliases (company names found in text).

    Raises:
        InvalidInput: not a ticker symbol, or an alias that is empty or too short to be safe (< 3 characters).
    """
    ticker = _tickers([ticker])[0] if ticker and ticker.strip() else ""
    if not ticker:
        raise InvalidInput("a ticker symbol is needed", {"field": "ticker"})
    clean = [a.strip() for a in aliases if isinstance(a, str) and a.strip()]
    if any(len(a) < 3 for a in clean):
        raise InvalidInput("aliases must be at least 3 characters long", {"field": "aliases"})
    row = session.scalar(select(WatchlistEntry).where(WatchlistEntry.ticker == ticker))
    if row is None:
        row = WatchlistEntry(ticker=ticker)
        session.add(row)
    row.name, row.aliases, row.active = name, clean, bool(active)
    session.flush()
    return WatchInfo.of(row)


def remove_watch(session: Session, ticker: str) -> None:
    """Remove a watched ticker.

    Raises:
        NotFound: it is not on the watchlist.
    """
    row = session.scalar(select(WatchlistEntry).where(WatchlistEntry.ticker == normalise_ticker(ticker)))
    if row is None:
        raise NotFound(f"{ticker} is not on the watchlist")
    session.delete(row)
    session.flush()
