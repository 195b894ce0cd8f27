"""Raw payload -> validated message with an idempotency key; the checks every entry point shares.

Idempotency key: `id:<source>:<id>` when the payload carries an id (a tweet id, a news id), else
`sha:<sha256 of text, ts and tickers>`. The StockNet stream lists 14,544 tweets under several tickers: the key is
per tweet, so each tweet is stored once and every ticker it was filed under is linked to it (message_tickers).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from monitor.enrich import TICKER
from monitor.language import detect_language
from monitor.vocabulary import normalise_ticker
from newsdesk import inputs
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput, PayloadTooLarge

MAX_TEXT_CHARS = 10_000
MAX_ID_CHARS = 128
MAX_SOURCE_CHARS = 64
MAX_TICKERS = 20
MAX_META_DEPTH = 16
KNOWN_FIELDS = ("text", "id", "tweet_id", "ts", "source", "ticker", "tickers")
_SOURCE = re.compile(r"^[\w.:\-]{1,64}$")


@dataclass
class ValidMessage:
    """A payload that passed validation, ready to enrich, classify and store."""

    key: str
    source: str
    source_id: str | None
    text: str
    ts: datetime
    ticker_hints: list[str]
    lang: str
    flag: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def parse_body(body: bytes, max_bytes: int) -> list[Any]:
    """Decode an HTTP/JSON body (one object or an array of objects) into a list of raw items.

    Raises:
        PayloadTooLarge: the body is longer than `max_bytes`.
        InvalidInput: not UTF-8, malformed JSON, or neither an object nor an array.
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body of {len(body)} bytes is over the {max_bytes}-byte limit",
                              {"limit": max_bytes, "size": len(body)})
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body is not valid UTF-8 (byte {exc.start})", {"position": exc.start}) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           {"line": exc.lineno, "column": exc.colno}) from exc
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        if not data:
            raise InvalidInput("empty array: nothing to ingest")
        return data
    raise InvalidInput(f"body must be a JSON object or an array of objects, got {type(data).__name__}")


def decode_item(raw: Any) -> dict[str, Any]:
    """A raw item (dict, JSON text or bytes) as a dict.

    Raises:
        InvalidInput: bytes that are not UTF-8, malformed JSON, or JSON that is not an object.
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"not valid UTF-8 (byte {exc.start})") from exc
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
        except ValueError as exc:  # e.g. an integer literal over Python's 4,300-digit limit
            raise InvalidInput(f"malformed JSON: {exc}") from exc
        except RecursionError:
            raise InvalidInput("JSON nested too deep") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"item must be a JSON object, got {type(raw).__name__}")
    return raw


def parse_ts(value: Any, now: datetime | None = None) -> datetime:
    """Naive-UTC datetime from ISO 8601 text or epoch seconds; `now` when missing.

    Raises:
        InvalidInput: unparsable, or more than a day in the future.
    """
    now = now or utcnow()
    if value is None or value == "":
        return now
    if isinstance(value, bool):
        raise InvalidInput("'ts' must be an ISO 8601 string or epoch seconds, got a boolean")
    try:
        if isinstance(value, (int, float)):
            ts = datetime.fromtimestamp(float(value), tz=timezone.utc)
        elif isinstance(value, str):
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        else:
            raise TypeError(type(value).__name__)
        if ts.tzinfo is not None:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC: OverflowError
            ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise InvalidInput(f"'ts' is not an ISO 8601 time or epoch seconds: {inputs.scrub(repr(value))[:80]}") from exc
    if ts > now + timedelta(days=1):
        raise InvalidInput(f"'ts' {value!r} is more than a day in the future")
    return ts


def bind_source(payloads: list[Any], source: str) -> list[Any]:
    """Payloads whose `source` field is kept under `source` (an ingest token's own name): `api:feed` sending
    `"source": "reuters"` stores `api:feed:reuters`, so one token can never pre-empt or re-tag another feed's ids."""
    out = []
    for item in payloads:
        if isinstance(item, dict) and item.get("source") not in (None, ""):
            claimed = item["source"]
            bound = f"{source}:{claimed}"[:MAX_SOURCE_CHARS] if isinstance(claimed, str) else claimed
            item = {**item, "source": bound}
        out.append(item)
    return out


def _tickers(item: dict[str, Any]) -> list[str]:
    value = item.get("tickers", item.get("ticker"))
    if value is None or value == "":
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput("'ticker' must be a string or a list of strings")
    if len(values) > MAX_TICKERS:
        raise InvalidInput(f"more than {MAX_TICKERS} tickers")
    out = []
    for v in values:
        t = normalise_ticker(v)
        if not TICKER.match(t):
            raise InvalidInput(f"'ticker' {v!r} is not a ticker symbol")
        out.append(t)
    return sorted(set(out))


def idempotency_key(source: str, source_id: str | None, text: str, ts_raw: Any, tickers: list[str]) -> str:
    """`id:<source>:<id>` when there is a source id, else a content hash of text, given time and tickers."""
    if source_id:
        return f"id:{source}:{source_id}"[:160]
    digest = hashlib.sha256(json.dumps([text, str(ts_raw or ""), tickers]).encode("utf-8")).hexdigest()
    return f"sha:{digest}"


def validate_payload(raw: Any, source: str, now: datetime | None = None) -> ValidMessage:
    """Validate one raw item and build its `ValidMessage` (language flagged, key computed).

    Raises:
        InvalidInput: the reason, naming the field.
    """
    item = decode_item(raw)
    text = item.get("text")
    if text is None:
        raise InvalidInput("missing field 'text'")
    if not isinstance(text, str):
        raise InvalidInput(f"'text' must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"'text' is {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
    text = inputs.check_text(text.replace("\x00", ""), "text")
    raw_id = item.get("id", item.get("tweet_id"))
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise InvalidInput(f"'id' must be a string or an integer, got {type(raw_id).__name__}")
    if isinstance(raw_id, int) and abs(raw_id) >= 10 ** MAX_ID_CHARS:
        raise InvalidInput(f"'id' is longer than {MAX_ID_CHARS} characters")
    source_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else None
    if source_id:
        inputs.check_text(source_id, "id", MAX_ID_CHARS)
    src = item.get("source", source) or source
    if not isinstance(src, str) or not _SOURCE.match(src):
        raise InvalidInput("'source' must be 1-64 letters, digits or ._:-")
    tickers = _tickers(item)
    ts = parse_ts(item.get("ts"), now)
    lang, flag = detect_language(text)
    meta = inputs.check_json({k: v for k, v in item.items() if k not in KNOWN_FIELDS}, "extra fields",
                             MAX_META_DEPTH)
    meta_json = json.dumps(meta, default=str)
    meta = {"truncated": True} if len(meta_json) > 4000 else json.loads(meta_json)
    return ValidMessage(key=idempotency_key(src, source_id, text, item.get("ts"), tickers), source=src,
                        source_id=source_id, text=text, ts=ts, ticker_hints=tickers, lang=lang, flag=flag, meta=meta)


def raw_text(raw: Any, limit: int = 20_000) -> str:
    """The raw item as text for a dead-letter row (invalid UTF-8 replaced, cut at `limit` characters)."""
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw).decode("utf-8", errors="replace")
    elif isinstance(raw, str):
        text = raw
    else:
        try:
            text = json.dumps(raw, default=str)
        except (TypeError, ValueError, RecursionError):
            text = "<unprintable payload>"
    return inputs.scrub(text[:limit])
