"""monitor's words, one definition each: message status, alert state, rule kind, severity, replay target, tickers."""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    PENDING = "pending"  # waiting for a model
    CLASSIFIED = "classified"
    SKIPPED = "skipped"  # empty or non-English: stored and flagged, never classified


class AlertState(StrEnum):
    """Stored states are FIRING and RESOLVED; ACKNOWLEDGED and SILENCED are firing alerts with that mark (shown and
    filtered as states)."""

    FIRING = "firing"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"


class RuleKind(StrEnum):
    NEGATIVE_BURST = "negative_burst"  # share of negative messages in a window
    VOLUME_SPIKE = "volume_spike"  # message count against the ticker's baseline
    KEYWORD = "keyword"  # messages matching words or a pattern


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ReplayTarget(StrEnum):
    """Where `stream replay` sends lines."""

    DIRECT = "direct"  # ingest in this process
    REDIS = "redis"  # onto the stream, for the workers
    HTTP = "http"  # POST /api/v1/ingest


ALERT_STATES: tuple[str, ...] = (AlertState.FIRING.value, AlertState.ACKNOWLEDGED.value, AlertState.RESOLVED.value,
                                 AlertState.SILENCED.value)  # the order the filters show them
RULE_KINDS: tuple[str, ...] = tuple(k.value for k in RuleKind)
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
REPLAY_TARGETS: tuple[str, ...] = tuple(t.value for t in ReplayTarget)
TICKER_MAX = 16  # characters kept of a ticker typed into a filter


def normalise_ticker(value: object) -> str:
    """A ticker as stored: no surrounding space, no leading `$`, upper case ("" when nothing is left)."""
    return str(value or "").strip().lstrip("$").upper()
