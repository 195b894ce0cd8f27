"""Alert rules as pure functions: (parameters, window statistics) -> met or not, with values and evidence.

Three kinds:
- negative_burst: negative messages about a ticker in the window are many (>= min_negative), a large share of the
  classified ones (>= min_share) and unusual for that ticker (z-score of the window's negative count against
  window-sized buckets of the trailing baseline_days >= z_threshold).
- volume_spike: the window's message count is >= min_count, >= min_ratio times the baseline mean and its z-score
  is >= z_threshold; the baseline must hold >= min_history messages (a ticker never seen before has no "usual").
- keyword: at least min_count messages in the window contain one of the phrases (case-insensitive, whole words)
  and carry the required sentiment ("any" for no filter).
The z-score divides by max(std, 1): with an empty or flat baseline one message more counts as one sigma.
A rule scoped to topics sees, per topic, only the messages the model gave that topic (window and baseline alike).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.vocabulary import RULE_KINDS, RuleKind
from newsdesk.errors import InvalidInput

SENTIMENTS = ("any", "negative", "neutral", "positive")
MAX_EVIDENCE = 50

DEFAULTS: dict[str, dict[str, Any]] = {
    RuleKind.NEGATIVE_BURST: {"window_minutes": 360, "baseline_days": 7, "min_negative": 4, "min_share": 0.4,
                              "z_threshold": 2.5},
    RuleKind.VOLUME_SPIKE: {"window_minutes": 60, "baseline_days": 7, "min_count": 10, "min_ratio": 3.0,
                            "z_threshold": 3.0, "min_history": 10},
    RuleKind.KEYWORD: {"window_minutes": 360, "phrases": [], "sentiment": "negative", "min_count": 1},
}
_LIMITS = {"window_minutes": (1, 7 * 1440), "baseline_days": (1, 90), "min_negative": (1, 100_000),
           "min_count": (1, 100_000), "min_history": (0, 1_000_000), "min_share": (0.0, 1.0),
           "z_threshold": (0.0, 100.0), "min_ratio": (0.0, 1000.0)}


@dataclass
class WindowMessage:
    """A message in the window: id, text, label (None while unclassified) and time."""

    id: int
    text: str
    label: str | None
    ts: datetime


@dataclass
class WindowStats:
    """What a rule sees for one ticker (within one topic, for a topic-scoped rule): the window's messages and the
    baseline's per-bucket counts."""

    ticker: str
    start: datetime
    end: datetime
    messages: list[WindowMessage] = field(default_factory=list)
    baseline_counts: list[int] = field(default_factory=list)  # per window-sized bucket (negative or all)
    topic: str | None = None

    @property
    def subject(self) -> str:
        """What the summary says the messages are about: the ticker, and the topic when scoped."""
        return f"{self.ticker} within {self.topic!r}" if self.topic else self.ticker


@dataclass
class RuleResult:
    met: bool
    values: dict[str, Any]
    summary: str
    evidence_ids: list[int] = field(default_factory=list)


def validate_params(kind: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Parameters of a rule of `kind` with defaults filled in.

    Raises:
        InvalidInput: unknown kind or key, a value of the wrong type or out of range.
    """
    if kind not in DEFAULTS:
        raise InvalidInput(f"unknown rule kind {kind!r}; one of {', '.join(RULE_KINDS)}", {"field": "kind"})
    out = dict(DEFAULTS[kind])
    for key, value in (params or {}).items():
        if key not in out:
            raise InvalidInput(f"unknown parameter {key!r} for a {kind} rule", {"field": key})
        default = out[key]
        if key == "phrases":
            if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
                raise InvalidInput("'phrases' must be a list of non-empty strings", {"field": key})
            out[key] = [p.strip() for p in value]
        elif key == "sentiment":
            if value not in SENTIMENTS:
                raise InvalidInput(f"'sentiment' must be one of {', '.join(SENTIMENTS)}", {"field": key})
            out[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidInput(f"{key!r} must be a number", {"field": key})
            low, high = _LIMITS[key]
            if not low <= value <= high:
                raise InvalidInput(f"{key!r} must be between {low} and {high}", {"field": key})
            out[key] = int(value) if isinstance(default, int) else float(value)
    if kind == RuleKind.KEYWORD and not out["phrases"]:
        raise InvalidInput("a keyword rule needs at least one phrase", {"field": "phrases"})
    return out


PARAM_HELP = {  # what each parameter means, for the rule editor's fields
    "window_minutes": "window (minutes)", "baseline_days": "baseline (days)",
    "min_negative": "at least this many negative messages", "min_share": "negative share at least (0-1)",
    "z_threshold": "z-score against the baseline at least", "min_count": "at least this many messages",
    "min_ratio": "times the baseline mean at least", "min_history": "baseline messages needed at least",
    "phrases": "phrases (comma-separated, whole words)", "sentiment": "sentiment of the matching messages",
}


def param_fields(kind: str) -> list[dict[str, Any]]:
    """The parameters of a rule kind as form fields: key, label, type (int | float | phrases | choice), default,
    limits (numbers) or choices.

    Raises:
        InvalidInput: unknown kind.
    """
    if kind not in DEFAULTS:
        raise InvalidInput(f"unknown rule kind {kind!r}; one of {', '.join(RULE_KINDS)}", {"field": "kind"})
    out = []
    for key, default in DEFAULTS[kind].items():
        field_: dict[str, Any] = {"key": key, "label": PARAM_HELP.get(key, key), "default": default}
        if key == "phrases":
            field_["type"] = "phrases"
        elif key == "sentiment":
            field_.update(type="choice", choices=list(SENTIMENTS))
        else:
            low, high = _LIMITS[key]
            field_.update(type="int" if isinstance(default, int) else "float", min=low, max=high)
        out.append(field_)
    return out


def parse_param_fields(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """Form values (strings, by parameter key; blank: the kind's default) -> parameters for `validate_params`.

    Raises:
        InvalidInput: unknown kind, a number that is not a number (naming the field).
    """
    params: dict[str, Any] = {}
    for spec in param_fields(kind):
        raw = (form.get(spec["key"]) or "").strip()
        if not raw:
            continue
        if spec["type"] == "phrases":
            params[spec["key"]] = [p.strip() for p in raw.split(",") if p.strip()]
        elif spec["type"] == "choice":
            params[spec["key"]] = raw
        else:
            try:
                if not raw.isascii():  # int() and float() also take other scripts' digits
                    raise ValueError(raw)
                params[spec["key"]] = int(raw) if spec["type"] == "int" else float(raw)
            except ValueError:
                whole = " whole" if spec["type"] == "int" else ""
                raise InvalidInput(f"{spec['label']} must be a{whole} number, not {raw[:20]!r}",
                                   {"field": spec["key"]}) from None
    return params


MAX_TOPICS = 50
MAX_TOPIC_CHARS = 64


def validate_topics(values: Any) -> list[str]:
    """A rule's topic scope as a sorted list of distinct topic labels (a comma-separated string is split).

    Topic labels come from the served model, so any non-empty label of up to 64 characters is accepted.

    Raises:
        InvalidInput: not a list of strings, an over-long label, or too many topics.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise InvalidInput("'topics' must be a list of topic labels", {"field": "topics"})
    out = sorted({" ".join(v.split()) for v in values if v.strip()})
    long = [t for t in out if len(t) > MAX_TOPIC_CHARS]
    if long:
        raise InvalidInput(f"topic {long[0][:20]!r}... is longer than {MAX_TOPIC_CHARS} characters",
                           {"field": "topics"})
    if len(out) > MAX_TOPICS:
        raise InvalidInput(f"a rule can be scoped to at most {MAX_TOPICS} topics", {"field": "topics"})
    return out


def zscore(value: float, baseline: list[int]) -> tuple[float, float, float]:
    """(z, mean, std) of `value` against the baseline bucket counts; std floored at 1."""
    if not baseline:
        return float(value), 0.0, 0.0
    mean = sum(baseline) / len(baseline)
    std = math.sqrt(sum((c - mean) ** 2 for c in baseline) / len(baseline))
    return (value - mean) / max(std, 1.0), mean, std


_RETWEET = re.compile(r"^(?:rt\s+@\w+:?\s*)+|https?://\S+|\s+", re.IGNORECASE)


def distinct_count(messages: list[WindowMessage]) -> int:
    """Messages with different text (retweet prefix, links and spacing ignored); untexted ones count each."""
    keys = {(_RETWEET.sub(" ", m.text).strip().lower() or f"#{m.id}") if m.text else f"#{m.id}" for m in messages}
    return len(keys)


def negative_burst(params: dict[str, Any], stats: WindowStats) -> RuleResult:
    """Is the ticker's negative flow in the window a burst against its own baseline?

    min_negative counts distinct texts, so one headline retweeted seven times is one negative message.
    """
    labelled = [m for m in stats.messages if m.label]
    negatives = [m for m in labelled if m.label == "negative"]
    distinct = distinct_count(negatives)
    share = len(negatives) / len(labelled) if labelled else 0.0
    z, mean, std = zscore(len(negatives), stats.baseline_counts)
    met = distinct >= params["min_negative"] and share >= params["min_share"] and z >= params["z_threshold"]
    values = {"negative": len(negatives), "distinct_negative": distinct, "classified": len(labelled),
              "total": len(stats.messages),
              "share": round(share, 3), "z": round(z, 2), "baseline_mean": round(mean, 3),
              "baseline_std": round(std, 3)}
    summary = (f"{len(negatives)} negative of {len(labelled)} messages about {stats.subject} in "
               f"{params['window_minutes']} min ({share:.0%}, z={z:.1f} vs baseline {mean:.2f})")
    return RuleResult(met, values, summary, _latest_ids(negatives))


def volume_spike(params: dict[str, Any], stats: WindowStats) -> RuleResult:
    """Is the ticker's message count in the window a spike against its own baseline?"""
    n = len(stats.messages)
    z, mean, std = zscore(n, stats.baseline_counts)
    ratio = n / mean if mean > 0 else math.inf if n else 0.0
    history = sum(stats.baseline_counts)
    met = (n >= params["min_count"] and ratio >= params["min_ratio"] and z >= params["z_threshold"]
           and history >= params["min_history"])
    values = {"count": n, "ratio": round(ratio, 2) if math.isfinite(ratio) else None, "z": round(z, 2),
              "baseline_mean": round(mean, 3), "baseline_std": round(std, 3)}
    summary = (f"{n} messages about {stats.subject} in {params['window_minutes']} min "
               f"(baseline {mean:.2f} per window, z={z:.1f})")
    return RuleResult(met, values, summary, _latest_ids(stats.messages))


def phrase_pattern(phrases: list[str]) -> re.Pattern[str]:
    """One case-insensitive whole-word pattern for the phrases (inner whitespace matches any whitespace)."""
    parts = [r"\s+".join(re.escape(w) for w in p.split()) for p in phrases]
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def keyword(params: dict[str, Any], stats: WindowStats) -> RuleResult:
    """Do enough messages in the window contain a watched phrase with the required sentiment?"""
    pattern = phrase_pattern(params["phrases"])
    want = params["sentiment"]
    hits = [m for m in stats.messages if pattern.search(m.text) and (want == "any" or m.label == want)]
    met = len(hits) >= params["min_count"]
    found = sorted({pattern.search(m.text).group(0).lower() for m in hits})
    values = {"matches": len(hits), "phrases": found, "sentiment": want}
    summary = f"{len(hits)} {'' if want == 'any' else want + ' '}messages about {stats.subject} mention " + \
        (", ".join(repr(p) for p in found) or "a watched phrase")
    return RuleResult(met, values, summary, _latest_ids(hits))


def evaluate(kind: str, params: dict[str, Any], stats: WindowStats) -> RuleResult:
    """Dispatch to the rule function of `kind`."""
    return {RuleKind.NEGATIVE_BURST: negative_burst, RuleKind.VOLUME_SPIKE: volume_spike,
            RuleKind.KEYWORD: keyword}[kind](params, stats)


def baseline_of(kind: str) -> str:
    """Which messages the baseline buckets count: "negative" (burst), "all" (volume) or "none" (keyword)."""
    return {RuleKind.NEGATIVE_BURST: "negative", RuleKind.VOLUME_SPIKE: "all", RuleKind.KEYWORD: "none"}[kind]


def _latest_ids(messages: list[WindowMessage]) -> list[int]:
    return [m.id for m in sorted(messages, key=lambda m: m.ts)[-MAX_EVIDENCE:]]
