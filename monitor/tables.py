"""ORM classes for monitor's tables: messages, tickers per message, dead letters, watchlist, rules and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from monitor.vocabulary import AlertState, MessageStatus
from newsdesk.db import Base, utcnow


class Message(Base):
    """One ingested message, stored exactly once per idempotency key."""

    __tablename__ = "messages"
    __table_args__ = (sa.Index("ix_messages_topic_ts", "topic", "ts"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(160), unique=True)  # "id:<source>:<id>" or "sha:<hash>"
    source: Mapped[str] = mapped_column(sa.String(64), default="")
    source_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    text: Mapped[str] = mapped_column(sa.Text, default="")
    ts: Mapped[datetime] = mapped_column(sa.DateTime, index=True)  # the message's own time (UTC)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    lang: Mapped[str] = mapped_column(sa.String(8), default="en")
    flag: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)  # empty | non_english
    status: Mapped[str] = mapped_column(sa.String(16), default=MessageStatus.PENDING.value, index=True)
    label: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    scores: Mapped[dict[str, float] | None] = mapped_column(sa.JSON, nullable=True)
    topic: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)  # NULL: the model has no topic head
    topic_score: Mapped[float | None] = mapped_column(sa.Float, nullable=True)  # the topic's probability
    model_version: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    classified_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True, index=True)
    tickers: Mapped[str] = mapped_column(sa.String(512), default="")  # comma-separated, for display
    meta: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class MessageTicker(Base):
    """A (message, ticker) link with the message time, label and topic copied for per-ticker windows."""

    __tablename__ = "message_tickers"
    __table_args__ = (
        sa.UniqueConstraint("message_id", "ticker", name="uq_message_tickers_message_ticker"),
        sa.Index("ix_message_tickers_ticker_ts", "ticker", "ts"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(sa.ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    ticker: Mapped[str] = mapped_column(sa.String(16))
    ts: Mapped[datetime] = mapped_column(sa.DateTime)
    label: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    topic: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class DeadLetter(Base):
    """A payload that failed validation, classification or processing, kept with the reason for replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(64), default="")
    stage: Mapped[str] = mapped_column(sa.String(16), default="validate")  # validate | classify | process
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    payload: Mapped[str] = mapped_column(sa.Text, default="")  # raw text as received (invalid UTF-8 replaced)
    stream_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    deliveries: Mapped[int] = mapped_column(sa.Integer, default=1)
    status: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)  # open | replayed | dismissed
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow, index=True)
    replayed_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    message_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)  # who replayed or dismissed it
    closed_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    original_payload: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # as received, once edited


class WatchlistEntry(Base):
    """A watched ticker with the company names (aliases) that also identify it in text."""

    __tablename__ = "watchlist"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    ticker: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(128), default="")
    aliases: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class AlertRule(Base):
    """An editable rule: kind (negative_burst | volume_spike | keyword) with its parameters."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    tickers: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # empty: every ticker
    topics: Mapped[list[str]] = mapped_column(sa.JSON, default=list)  # empty: every message; else one alert per topic
    severity: Mapped[str] = mapped_column(sa.String(16), default="warning")
    repeat_interval_s: Mapped[int] = mapped_column(sa.Integer, default=4 * 3600)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow, onupdate=utcnow)


class Alert(Base):
    """One firing episode of a rule for a ticker (and topic, for a topic-scoped rule); `active_fingerprint` is set
    only while firing (unique)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    active_fingerprint: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, unique=True)
    rule_id: Mapped[int] = mapped_column(sa.Integer, index=True)
    rule_name: Mapped[str] = mapped_column(sa.String(128), default="")
    kind: Mapped[str] = mapped_column(sa.String(32), default="")
    ticker: Mapped[str] = mapped_column(sa.String(16), index=True)
    topic: Mapped[str | None] = mapped_column(sa.String(64), nullable=True, index=True)  # None: not topic-scoped
    state: Mapped[str] = mapped_column(sa.String(16), default=AlertState.FIRING.value, index=True)
    severity: Mapped[str] = mapped_column(sa.String(16), default="warning")
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    values: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(sa.DateTime)  # stream time of the first firing evaluation
    last_eval_at: Mapped[datetime] = mapped_column(sa.DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    ack_note: Mapped[str] = mapped_column(sa.Text, default="")
    silence_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_notified_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)  # stream time
    notify_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow, onupdate=utcnow, index=True)


class AlertEvidence(Base):
    """A message that drove an alert."""

    __tablename__ = "alert_evidence"
    __table_args__ = (sa.UniqueConstraint("alert_id", "message_id", name="uq_alert_evidence_alert_message"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(sa.Integer)
    added_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)


class Silence(Base):
    """Mutes notifications of alerts whose labels equal every matcher, from starts_at until ends_at (wall clock)."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    matchers: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)  # ticker, rule_id, kind, severity
    starts_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(sa.DateTime)
    created_by: Mapped[str] = mapped_column(sa.String(128), default="")
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    expired_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)


class Notification(Base):
    """One webhook delivery of an alert event (outbox row); every attempt is appended to `attempts`."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.Integer, index=True)
    event: Mapped[str] = mapped_column(sa.String(16))  # firing | repeat | resolved
    url: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending", index=True)  # pending|delivered|failed
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    next_attempt_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    # one outbox row per alert transition ("<alert>:firing", "<alert>:resolved", ...; fan-out copies add ">url")
    dedup_key: Mapped[str | None] = mapped_column(sa.String(200), nullable=True, unique=True)
    retry_since: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)  # retry period starts here
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow, onupdate=utcnow)


class RuleCursor(Base):
    """How far (stream time) the rules have been evaluated over committed messages; one row, locked to move."""

    __tablename__ = "rule_cursor"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    evaluated_to: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, default=utcnow, onupdate=utcnow)
