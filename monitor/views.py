"""Result dataclasses the service returns (never ORM rows), and their converters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from monitor.tables import Alert, AlertRule, DeadLetter, Message, Silence, WatchlistEntry


@dataclass
class IngestResult:
    """What one `ingest_messages` call did; `rejected` lists {index, reason} per invalid item."""

    stored: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    classified: int = 0
    pending: int = 0  # stored unclassified: no model yet, the classify job will label them
    skipped: int = 0  # empty or non-English: stored and flagged, not classified
    dead_lettered: int = 0
    alerts_fired: list[int] = field(default_factory=list)
    message_ids: list[int] = field(default_factory=list, repr=False)
    tickers: list[str] = field(default_factory=list, repr=False)  # tickers the stored messages count for
    model_version: str | None = None
    model_seconds: float = 0.0

    def add(self, other: IngestResult) -> None:
        for name in ("stored", "duplicates", "classified", "pending", "skipped", "dead_lettered", "model_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected += other.rejected
        self.alerts_fired += other.alerts_fired
        self.model_version = other.model_version or self.model_version

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("message_ids")
        d.pop("tickers")
        return d


@dataclass
class MessageInfo:
    id: int
    ts: datetime
    received_at: datetime
    source: str
    source_id: str | None
    text: str
    tickers: list[str]
    status: str
    label: str | None
    scores: dict[str, float] | None
    model_version: str | None
    lang: str
    flag: str | None
    topic: str | None  # None: not classified yet, or the model has no topic head
    topic_score: float | None

    @classmethod
    def of(cls, m: Message) -> MessageInfo:
        return cls(m.id, m.ts, m.received_at, m.source, m.source_id, m.text,
                   [t for t in (m.tickers or "").split(",") if t], m.status, m.label, m.scores, m.model_version,
                   m.lang, m.flag, m.topic, m.topic_score)

    def to_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass
class AlertInfo:
    id: int
    fingerprint: str
    rule_id: int
    rule_name: str
    kind: str
    ticker: str
    topic: str | None  # set for the alerts of a topic-scoped rule
    state: str
    severity: str
    summary: str
    values: dict[str, Any]
    started_at: datetime
    last_eval_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str
    silence_id: int | None
    notify_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def silenced(self) -> bool:
        return self.silence_id is not None

    @classmethod
    def of(cls, a: Alert) -> AlertInfo:
        return cls(a.id, a.fingerprint, a.rule_id, a.rule_name, a.kind, a.ticker, a.topic, a.state, a.severity,
                   a.summary,
                   a.values or {}, a.started_at, a.last_eval_at, a.resolved_at, a.acknowledged_by,
                   a.acknowledged_at, a.ack_note or "", a.silence_id, a.notify_count or 0, a.created_at,
                   a.updated_at)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["silenced"] = self.silenced
        return {k: _jsonable(v) for k, v in d.items()}


@dataclass
class AlertDetail(AlertInfo):
    evidence: list[MessageInfo] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RuleInfo:
    id: int
    name: str
    kind: str
    enabled: bool
    params: dict[str, Any]
    tickers: list[str]
    topics: list[str]  # empty: every message counts; else one evaluation (and alert) per topic
    severity: str
    repeat_interval_s: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: AlertRule) -> RuleInfo:
        return cls(r.id, r.name, r.kind, r.enabled, r.params or {}, list(r.tickers or []), list(r.topics or []),
                   r.severity, r.repeat_interval_s, r.created_at, r.updated_at)


@dataclass
class SilenceInfo:
    id: int
    matchers: dict[str, Any]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    expired_at: datetime | None
    active: bool

    @classmethod
    def of(cls, s: Silence, now: datetime) -> SilenceInfo:
        active = s.expired_at is None and s.starts_at <= now < s.ends_at
        return cls(s.id, s.matchers or {}, s.starts_at, s.ends_at, s.created_by, s.comment, s.expired_at, active)


@dataclass
class DeadLetterInfo:
    id: int
    source: str
    stage: str
    reason: str
    payload: str
    stream_id: str | None
    deliveries: int
    status: str
    created_at: datetime
    replayed_at: datetime | None
    message_id: int | None
    closed_by: str | None = None  # who replayed or dismissed it
    closed_at: datetime | None = None
    original_payload: str | None = None  # the payload as received, when it was edited before a replay

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterInfo:
        return cls(d.id, d.source, d.stage, d.reason, d.payload, d.stream_id, d.deliveries, d.status, d.created_at,
                   d.replayed_at, d.message_id, d.closed_by, d.closed_at, d.original_payload)


@dataclass
class WatchInfo:
    ticker: str
    name: str
    aliases: list[str]
    active: bool

    @classmethod
    def of(cls, w: WatchlistEntry) -> WatchInfo:
        return cls(w.ticker, w.name, list(w.aliases or []), w.active)


@dataclass
class ReplayReport:
    """Totals of a file replay."""

    path: str
    to: str
    read: int = 0
    sent: int = 0
    ingest: IngestResult = field(default_factory=IngestResult)
    seconds: float = 0.0
    error: str = ""  # why the file could not be read to its end (what was read before it is kept)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        r = self.ingest
        text = f"{self.read} lines to {self.to} in {self.seconds:.1f} s ({self.rate:.0f} msg/s)"
        if self.to == "direct":
            text += (f": {r.stored} stored ({r.classified} classified, {r.pending} pending, {r.skipped} flagged), "
                     f"{r.duplicates} duplicates, {len(r.rejected)} rejected, {len(r.alerts_fired)} alerts fired")
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    return value
