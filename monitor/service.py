"""monitor's front door: ingest (HTTP, replay, stream all call `ingest_messages`), dead letters, messages, series.

Alert, rule, silence and watchlist functions live in `monitor.alerting` and are re-exported here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor import producer, rule_runner, rules
from monitor.alerting import (  # noqa: F401
    acknowledge_alert,
    create_rule,
    create_silence,
    delete_rule,
    describe_matchers,
    ensure_default_rules,
    expire_silence,
    get_alert,
    list_alert_groups,
    list_alerts,
    list_rules,
    list_silences,
    list_watchlist,
    remove_watch,
    update_rule,
    upsert_watch,
)
from monitor.enrich import ensure_default_watchlist, load_enricher  # noqa: F401
from monitor.ingest import ValidMessage, bind_source, raw_text, validate_payload  # noqa: F401 - bind_source
from monitor.tables import Alert, AlertRule, DeadLetter, Message, MessageTicker
from monitor.views import DeadLetterInfo, IngestResult, MessageInfo
from monitor.vocabulary import MessageStatus, normalise_ticker
from newsdesk.db import utcnow
from newsdesk.errors import Conflict, InvalidInput, NotFound, Unavailable
from newsdesk.inputs import scrub
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

MAX_TICKERS_PER_MESSAGE = 6  # more and the message is flagged "many_tickers": stored, not classified, not counted


class Classifier(Protocol):
    """What monitor needs of the served model: every task's prediction for a batch, from one encoder pass."""

    version: str
    tasks: tuple[str, ...]  # "sentiment" always; "topic" when the model has a topic head

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Any]]: ...


def ingest_messages(session: Session, classifier: Classifier | None, payloads: list[Any], source: str, *,
                    evaluate_rules: bool = True, dead_letter: bool = True, stream_ids: Sequence[str] | None = None,
                    batch_size: int = 64) -> IngestResult:
    """Validate, deduplicate, enrich, classify and store `payloads`, then evaluate the rules; the caller commits.

    Invalid items are reported in `rejected` ({index, reason}) and, with `dead_letter`, kept as dead letters.
    With `classifier=None` (or one that raises Unavailable) messages are stored unclassified (status pending).
    """
    result = IngestResult()
    now = utcnow()
    valid: list[tuple[int, ValidMessage]] = []
    for index, raw in enumerate(payloads):
        try:
            valid.append((index, validate_payload(raw, source, now)))
        except (InvalidInput, ValueError, OverflowError, RecursionError) as exc:  # one bad item never sinks the rest
            reason = exc.message if isinstance(exc, InvalidInput) else f"invalid item: {type(exc).__name__}: {exc}"
            reason = scrub(reason)[:500]
            result.rejected.append({"index": index, "reason": reason})
            if dead_letter:
                add_dead_letter(session, source, "validate", reason, raw,
                                stream_ids[index] if stream_ids else None)
                result.dead_lettered += 1
    fresh = _deduplicate(session, valid, result)
    enricher = load_enricher(session)
    tickers = {i: enricher.extract(m.text, m.ticker_hints) for i, m in fresh}
    for i, m in fresh:
        if len(tickers[i]) > MAX_TICKERS_PER_MESSAGE and m.flag is None:
            m.flag = "many_tickers"  # a list of cashtags is spam, not news about any one of them
    preds = _classify(session, classifier, fresh, source, stream_ids, batch_size, result)
    touched: set[str] = set()
    newest: datetime | None = None
    todo = [(i, m) for i, m in fresh if not (i in preds and preds[i] is None)]  # None: dead-lettered by the model
    for index, msg, _row in _store_all(session, todo, tickers, preds, result):
        touched.update(_links(msg, tickers[index]))
        newest = max(newest, msg.ts) if newest else msg.ts
    result.tickers = sorted(touched)
    if evaluate_rules and touched:
        # Rules run at each new message's time (see rule_runner.advance); a late message joins the past.
        transitions = rule_runner.advance(session, late=touched)
        result.alerts_fired = [t.alert_id for t in transitions if t.event == "fired"]
    return result


def ingest_batch(database_url: str, classifier: Classifier | None, payloads: list[Any], source: str, *,
                 batch_size: int = 64) -> IngestResult:
    """`ingest_messages` in its own transaction; when the database refuses the batch for something validation did
    not foresee, each item is retried in its own transaction and the ones still refused become dead letters, so one
    bad item never costs the good ones beside it (the direct path: `POST /api/v1/ingest`, `stream replay`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from newsdesk.db import session_scope

    try:
        with session_scope(database_url) as session:
            return ingest_messages(session, classifier, payloads, source, batch_size=batch_size)
    except (SQLAlchemyError, ValueError, UnicodeError) as exc:
        log.warning("ingest batch of %d refused (%s: %s); retrying one by one", len(payloads), type(exc).__name__,
                    scrub(str(exc))[:200])
    total = IngestResult()
    for index, raw in enumerate(payloads):
        try:
            with session_scope(database_url) as session:
                one = ingest_messages(session, classifier, [raw], source, batch_size=batch_size)
        except (SQLAlchemyError, ValueError, UnicodeError) as exc:
            reason = scrub(f"refused by the database: {type(exc).__name__}: {exc}")[:500]
            with session_scope(database_url) as session:
                add_dead_letter(session, source, "process", reason, raw)
            one = IngestResult(dead_lettered=1)
            one.rejected.append({"index": 0, "reason": reason})
        for item in one.rejected:
            item["index"] = index
        total.add(one)
        total.message_ids += one.message_ids
    return total


def _deduplicate(session: Session, valid: list[tuple[int, ValidMessage]], result: IngestResult,
                 ) -> list[tuple[int, ValidMessage]]:
    """Drop items whose key is already stored or earlier in the batch; link any new ticker they name."""
    first: dict[str, ValidMessage] = {}
    for _, msg in valid:
        if msg.key in first:
            first[msg.key].ticker_hints = sorted(set(first[msg.key].ticker_hints) | set(msg.ticker_hints))
        else:
            first[msg.key] = msg
    query = select(Message.key, Message.id, Message.source, Message.flag).where(Message.key.in_(list(first)))
    found = session.execute(query).all() if first else []
    existing = {key: message_id for key, message_id, _, _ in found}
    stored_source = {key: source for key, _, source, _ in found}
    stored_flag = {key: flag for key, _, _, flag in found}
    fresh, seen = [], set()
    for index, msg in valid:
        if msg.key in existing or msg.key in seen:
            result.duplicates += 1
            # only the feed that stored a message may file it under more tickers (a content-hash key can match
            # another source's message: that one is left as it is), and a flagged one (spam, empty) stays as stored
            if msg.key in existing and msg.ticker_hints and stored_source[msg.key] == msg.source \
                    and stored_flag[msg.key] is None:
                _link_tickers(session, existing[msg.key], msg.ticker_hints)
            continue
        seen.add(msg.key)
        fresh.append((index, msg))
    return fresh


def _link_tickers(session: Session, message_id: int, hints: list[str]) -> None:
    """The same tweet filed under another ticker: link that ticker too (idempotent). A plain redelivery names
    only tickers already linked, so it changes nothing; links never grow past MAX_TICKERS_PER_MESSAGE."""
    msg = session.get(Message, message_id)
    have = set(session.scalars(select(MessageTicker.ticker).where(MessageTicker.message_id == message_id)))
    new = sorted(set(hints) - have)
    if not new or len(have) + len(new) > MAX_TICKERS_PER_MESSAGE:
        return
    have |= {t for t in (msg.tickers or "").split(",") if t}
    for ticker in new:
        try:
            with session.begin_nested():
                session.add(MessageTicker(message_id=message_id, ticker=ticker, ts=msg.ts, label=msg.label,
                                          topic=msg.topic))
        except IntegrityError:
            pass
        msg.tickers = ",".join(sorted(have | {ticker}))
        have.add(ticker)


def _classify(session: Session, classifier: Classifier | None, fresh: list[tuple[int, ValidMessage]],
              source: str, stream_ids: Sequence[str] | None, batch_size: int, result: IngestResult) -> dict:
    """index -> {task: Prediction} for classifiable items; None marks an item the model failed on (dead-lettered)."""
    todo = [(i, m) for i, m in fresh if m.flag is None]
    if classifier is None or not todo:
        return {}
    texts = list(dict.fromkeys(m.text for _, m in todo))  # retweets repeat a text: classify it once
    started = time.perf_counter()
    try:
        by_text = dict(zip(texts, classifier.predict_tasks(texts, batch_size=batch_size), strict=True))
        out = {i: by_text[m.text] for i, m in todo}
    except Unavailable:
        log.warning("sentiment model unavailable: %d messages stored unclassified", len(todo))
        return {}
    except Exception:  # one bad text must not sink the batch: retry one by one, dead-letter the culprits
        log.exception("classifier failed on a batch of %d; retrying one by one", len(todo))
        out = {}
        for i, m in todo:
            try:
                out[i] = classifier.predict_tasks([m.text], batch_size=1)[0]
            except Exception as exc:  # noqa: BLE001
                out[i] = None
                add_dead_letter(session, source, "classify", f"classifier failed: {type(exc).__name__}: {exc}",
                                {"text": m.text, "id": m.source_id, "ts": m.ts.isoformat(), "source": m.source},
                                stream_ids[i] if stream_ids else None)
                result.dead_lettered += 1
    result.model_seconds += time.perf_counter() - started
    result.model_version = classifier.version
    return out


def _store_all(session: Session, items: list[tuple[int, ValidMessage]], tickers: dict[int, list[str]],
               preds: dict, result: IngestResult) -> list[tuple[int, ValidMessage, Message]]:
    """Insert messages and their ticker links in one savepoint; on a concurrent duplicate, one savepoint each."""
    rows = [(i, m, _row(m, tickers[i], preds.get(i), result.model_version)) for i, m in items]
    try:
        with session.begin_nested():
            session.add_all(r for _, _, r in rows)
            session.flush()
            session.add_all(MessageTicker(message_id=r.id, ticker=t, ts=m.ts, label=r.label, topic=r.topic)
                            for i, m, r in rows for t in _links(m, tickers[i]))
            session.flush()
        stored = rows
    except IntegrityError:  # another consumer stored some of them meanwhile
        stored = []
        for i, m, _ in rows:
            row = _row(m, tickers[i], preds.get(i), result.model_version)
            try:
                with session.begin_nested():
                    session.add(row)
                    session.flush()
                    session.add_all(MessageTicker(message_id=row.id, ticker=t, ts=m.ts, label=row.label,
                                                  topic=row.topic) for t in _links(m, tickers[i]))
                    session.flush()
                stored.append((i, m, row))
            except IntegrityError:
                result.duplicates += 1
    for _, _, row in stored:
        result.stored += 1
        result.message_ids.append(row.id)
        if row.status == MessageStatus.CLASSIFIED.value:
            result.classified += 1
        elif row.status == MessageStatus.PENDING.value:
            result.pending += 1
        else:
            result.skipped += 1
    return stored


def _links(msg: ValidMessage, tickers: list[str]) -> list[str]:
    """The tickers a message counts for in per-ticker windows: none for cashtag spam."""
    return [] if msg.flag == "many_tickers" else tickers


def _row(msg: ValidMessage, tickers: list[str], pred: Any, version: str | None) -> Message:
    row = Message(key=msg.key, source=msg.source, source_id=msg.source_id, text=msg.text, ts=msg.ts,
                  received_at=utcnow(), lang=msg.lang, flag=msg.flag, tickers=",".join(tickers)[:512],
                  meta=msg.meta)
    if msg.flag is not None:
        row.status = MessageStatus.SKIPPED.value
    elif pred is not None:
        _set_prediction(row, pred, version)
    else:
        row.status = MessageStatus.PENDING.value
    return row


def _set_prediction(row: Message, preds: dict[str, Any], version: str | None) -> None:
    """Sentiment label and scores, and the topic with its probability when the model has a topic head."""
    sentiment = preds["sentiment"]
    row.status = MessageStatus.CLASSIFIED.value
    row.label = sentiment.label
    row.scores = {k: float(v) for k, v in sentiment.scores.items()}
    topic = preds.get("topic")
    row.topic = topic.label[:64] if topic is not None else None
    row.topic_score = round(float(topic.scores.get(topic.label, 0.0)), 6) if topic is not None else None
    row.model_version = version
    row.classified_at = utcnow()


def classify_pending(session: Session, classifier: Classifier, limit: int = 256, batch_size: int = 64) -> int:
    """Label (sentiment and topic) up to `limit` pending messages, then re-evaluate the rules for their tickers."""
    rows = session.scalars(select(Message).where(Message.status == MessageStatus.PENDING.value)
                           .order_by(Message.ts, Message.id).limit(limit)).all()
    if not rows:
        return 0
    preds = classifier.predict_tasks([r.text for r in rows], batch_size=batch_size)
    touched: set[str] = set()
    for row, pred in zip(rows, preds, strict=True):
        _set_prediction(row, pred, classifier.version)
        for link in session.scalars(select(MessageTicker).where(MessageTicker.message_id == row.id)):
            link.label, link.topic = row.label, row.topic
            touched.add(link.ticker)
    session.flush()
    if touched:
        rule_runner.evaluate_tickers(session, touched, max(r.ts for r in rows))
    return len(rows)


def rule_param_fields(kind: str) -> list[dict[str, Any]]:
    """The parameters of a rule kind as form fields (see `monitor.rules.param_fields`)."""
    return rules.param_fields(kind)


def parse_rule_params(kind: str, form: dict[str, str]) -> dict[str, Any]:
    """A rule form's parameter fields -> parameters (see `monitor.rules.parse_param_fields`)."""
    return rules.parse_param_fields(kind, form)


def add_dead_letter(session: Session, source: str, stage: str, reason: str, raw: Any,
                    stream_id: str | None = None, deliveries: int = 1) -> DeadLetter:
    """Keep a payload that could not be processed, with the reason, for the UI and a later replay."""
    row = DeadLetter(source=scrub(source)[:64], stage=stage, reason=scrub(reason), payload=raw_text(raw),
                     stream_id=stream_id,
                     deliveries=deliveries, status="open", created_at=utcnow())
    session.add(row)
    return row


def list_dead_letters(session: Session, limit: int = 50, offset: int = 0, *, status: str | None = None,
                      ) -> tuple[list[DeadLetterInfo], int]:
    """Dead letters, newest first, and the total count."""
    query = select(DeadLetter)
    if status:
        query = query.where(DeadLetter.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DeadLetter.id.desc()).limit(limit).offset(offset))
    return [DeadLetterInfo.of(r) for r in rows], total


MAX_EDITED_PAYLOAD = 64 * 1024  # characters: an edited payload is one message, not a batch


def _open_dead_letter(session: Session, dead_letter_id: int) -> DeadLetter:
    row = session.get(DeadLetter, dead_letter_id)
    if row is None:
        raise NotFound(f"dead letter {dead_letter_id} not found")
    if row.status != "open":
        raise Conflict(f"dead letter {dead_letter_id} was already {row.status}")
    return row


def replay_dead_letter(session: Session, classifier: Classifier | None, dead_letter_id: int, *,
                       payload: str | None = None, actor: str = "") -> DeadLetterInfo:
    """Ingest a dead letter's payload again (after fixing the model, or with `payload`: the payload as edited by an
    operator, the received one kept in `original_payload`); marks it replayed.

    Raises:
        NotFound: no such dead letter.
        Conflict: already replayed or dismissed.
        InvalidInput: the payload is still invalid, or an edited payload is empty or too long (the dead letter
            stays open; the caller's rollback also drops the edit).
    """
    row = _open_dead_letter(session, dead_letter_id)
    if payload is not None:
        if not payload.strip() or len(payload) > MAX_EDITED_PAYLOAD:
            raise InvalidInput(f"an edited payload must be 1-{MAX_EDITED_PAYLOAD} characters", {"field": "payload"})
        if payload != row.payload:
            row.original_payload = row.original_payload if row.original_payload is not None else row.payload
            row.payload = payload
    result = ingest_messages(session, classifier, [row.payload], row.source or "replay", dead_letter=False)
    if result.rejected:
        raise InvalidInput(f"dead letter {dead_letter_id} is still invalid: {result.rejected[0]['reason']}",
                           {"field": "payload"})
    row.status, row.replayed_at = "replayed", utcnow()
    row.closed_by, row.closed_at = scrub(actor)[:128] or None, row.replayed_at
    row.message_id = result.message_ids[0] if result.message_ids else None
    return DeadLetterInfo.of(row)


def dismiss_dead_letter(session: Session, dead_letter_id: int, actor: str = "", note: str = "") -> DeadLetterInfo:
    """Close a dead letter without replaying it (junk, or handled elsewhere); `note` is added to its reason.

    Raises:
        NotFound: no such dead letter.
        Conflict: already replayed or dismissed.
    """
    row = _open_dead_letter(session, dead_letter_id)
    row.status, row.closed_by, row.closed_at = "dismissed", scrub(actor)[:128] or None, utcnow()
    note = scrub(note).strip()[:500]
    if note:
        row.reason = f"{row.reason} (dismissed: {note})"
    log.info("dead letter %d dismissed by %s", dead_letter_id, actor or "?")
    return DeadLetterInfo.of(row)


def replay_dead_letters(session: Session, classifier: Classifier | None, *, reason: str | None = None,
                        stage: str | None = None, limit: int = 10_000, actor: str = "") -> dict[str, Any]:
    """Replay every open dead letter (oldest first), optionally only those whose reason contains `reason` or of
    one `stage`; each in its own savepoint. Returns {"replayed", "still_invalid", "ids"}.

    Raises:
        InvalidInput: a bad stage or limit.
    """
    if stage is not None and stage not in ("validate", "classify", "process"):
        raise InvalidInput("stage must be one of validate, classify, process", {"field": "stage"})
    if not 0 < limit <= 100_000:
        raise InvalidInput("limit must be between 1 and 100000", {"field": "limit"})
    query = select(DeadLetter.id).where(DeadLetter.status == "open")
    if reason:
        query = query.where(DeadLetter.reason.contains(reason, autoescape=True))
    if stage:
        query = query.where(DeadLetter.stage == stage)
    ids = list(session.scalars(query.order_by(DeadLetter.id).limit(limit)))
    out: dict[str, Any] = {"replayed": 0, "still_invalid": 0, "ids": []}
    for dead_letter_id in ids:
        try:
            with session.begin_nested():
                replay_dead_letter(session, classifier, dead_letter_id, actor=actor)
            out["replayed"] += 1
            out["ids"].append(dead_letter_id)
        except InvalidInput:
            out["still_invalid"] += 1
        except (Conflict, NotFound):  # replayed by someone else meanwhile
            continue
    if ids:
        log.info("replayed %d of %d dead letters (%d still invalid)", out["replayed"], len(ids), out["still_invalid"])
    return out


def undelivered_notifications(session: Session, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Webhook notifications not delivered yet (failed, or pending after a failed attempt), newest first."""
    from monitor import notify

    return notify.undelivered(session, limit)


def retry_notifications(session: Session, ids: Sequence[int] | None = None, *, actor: str = "") -> int:
    """Queue undelivered notifications (all, or `ids`) for another try now, with a fresh retry period."""
    from monitor import notify

    return notify.retry(session, ids, actor=actor)


def latest_messages(session: Session, limit: int = 50, ticker: str | None = None,
                    topic: str | None = None) -> list[MessageInfo]:
    """The newest messages (by message time), optionally about one ticker and/or of one topic."""
    query = select(Message)
    if ticker:
        query = query.join(MessageTicker, MessageTicker.message_id == Message.id).where(
            MessageTicker.ticker == normalise_ticker(ticker))
    if topic:
        query = query.where(Message.topic == topic)
    rows = session.scalars(query.order_by(Message.ts.desc(), Message.id.desc()).limit(limit))
    return [MessageInfo.of(m) for m in rows]


BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
EPOCH = datetime(1970, 1, 1)


def sentiment_series(session: Session, *, ticker: str | None = None, since: datetime | None = None,
                     bucket: str = "hour") -> list[dict[str, Any]]:
    """Counts per (bucket, ticker) of negative/neutral/positive messages since `since` (default: 7 stream days)."""
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}", {"field": "bucket"})
    since = since or rule_runner.stream_clock(session) - timedelta(days=7)
    query = select(MessageTicker.ticker, MessageTicker.ts, MessageTicker.label).where(MessageTicker.ts >= since)
    if ticker:
        query = query.where(MessageTicker.ticker == normalise_ticker(ticker))
    return _bucketed(session.execute(query), "ticker", BUCKETS[bucket])


def topic_series(session: Session, *, topic: str | None = None, since: datetime | None = None,
                 bucket: str = "hour") -> list[dict[str, Any]]:
    """Counts per (bucket, topic) of negative/neutral/positive messages since `since` (default: 7 stream days).

    Every classified message with a topic counts once, whether or not it names a ticker.
    """
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}", {"field": "bucket"})
    since = since or rule_runner.stream_clock(session) - timedelta(days=7)
    query = select(Message.topic, Message.ts, Message.label).where(Message.ts >= since, Message.topic.is_not(None))
    if topic:
        query = query.where(Message.topic == topic)
    return _bucketed(session.execute(query), "topic", BUCKETS[bucket])


def _bucketed(rows: Any, key: str, width: int) -> list[dict[str, Any]]:
    """(name, ts, label) rows -> per (bucket start, name) counts of each label, in time order."""
    series: dict[tuple[datetime, str], dict[str, Any]] = {}
    for name, ts, label in rows:
        start = EPOCH + timedelta(seconds=(ts - EPOCH).total_seconds() // width * width)
        row = series.setdefault((start, name), {"bucket": start, key: name, "negative": 0, "neutral": 0,
                                                "positive": 0, "total": 0})
        row["total"] += 1
        if label in ("negative", "neutral", "positive"):
            row[label] += 1
    return [series[k] for k in sorted(series)]


def list_topics(session: Session) -> list[str]:
    """The topics the model has given stored messages or rules are scoped to (never a hard-coded list), A-Z."""
    seen = set(session.scalars(select(Message.topic).where(Message.topic.is_not(None)).distinct()))
    for scope in session.scalars(select(AlertRule.topics)):
        seen.update(scope or [])
    return sorted(seen)


LIVE_MESSAGES = 20  # newest new messages sent in full with a "messages" event (the dashboard lists 20)


def changes_since(session: Session, cursor: str | None) -> tuple[list[dict[str, Any]], str]:
    """Alert changes, new messages and messages classified later, after `cursor` (opaque; None starts from now),
    for server-sent events.

    A "messages" event carries the count and the newest LIVE_MESSAGES of them, newest first, as MessageInfo dicts;
    a "classified" event the messages stored before the cursor (pending, then a model arrived) labelled since.
    """
    last_alert, last_msg, last_classified = _parse_cursor(cursor)
    events: list[dict[str, Any]] = []
    newest_msg = session.scalar(select(func.max(Message.id))) or 0
    newest_alert = session.scalar(select(func.max(Alert.updated_at)))
    newest_classified = session.scalar(select(func.max(Message.classified_at)))
    if cursor is None:
        return [], _cursor(newest_alert, newest_msg, newest_classified)
    from monitor.views import AlertInfo

    query = select(Alert).order_by(Alert.updated_at).limit(200)
    if last_alert is not None:
        query = query.where(Alert.updated_at > last_alert)
    for alert in session.scalars(query):
        events.append({"type": "alert", "alert": AlertInfo.of(alert).to_dict()})
        last_alert = alert.updated_at
    if newest_classified is not None and (last_classified is None or newest_classified > last_classified):
        query = select(Message).where(Message.id <= last_msg, Message.classified_at.is_not(None))
        if last_classified is not None:
            query = query.where(Message.classified_at > last_classified)
        rows = session.scalars(query.order_by(Message.ts.desc(), Message.id.desc()).limit(LIVE_MESSAGES)).all()
        if rows:
            events.append({"type": "classified", "messages": [MessageInfo.of(m).to_dict() for m in rows]})
    if newest_msg > last_msg:
        count = session.scalar(select(func.count(Message.id)).where(Message.id > last_msg)) or 0
        rows = session.scalars(select(Message).where(Message.id > last_msg)
                               .order_by(Message.ts.desc(), Message.id.desc()).limit(LIVE_MESSAGES))
        events.append({"type": "messages", "count": count, "last_id": newest_msg,
                       "messages": [MessageInfo.of(m).to_dict() for m in rows]})
    return events, _cursor(last_alert, max(newest_msg, last_msg),
                           max(filter(None, (newest_classified, last_classified)), default=None))


def _cursor(alert_ts: datetime | None, message_id: int, classified_ts: datetime | None = None) -> str:
    return (f"{alert_ts.isoformat() if alert_ts else ''}|{message_id}"
            f"|{classified_ts.isoformat() if classified_ts else ''}")


def _parse_cursor(cursor: str | None) -> tuple[datetime | None, int, datetime | None]:
    if not cursor:
        return None, 0, None
    try:
        ts, mid, classified = ([*cursor.split("|"), "", ""])[:3]
        return ((datetime.fromisoformat(ts) if ts else None), int(mid or 0),
                datetime.fromisoformat(classified) if classified else None)
    except ValueError as exc:
        raise InvalidInput(f"bad cursor {cursor!r}", {"field": "cursor"}) from exc


def enqueue_messages(settings: Settings, payloads: list[Any], source: str) -> int:
    """Push payloads onto the Redis stream (XADD) for the workers; returns how many were added.

    Raises:
        Unavailable: no redis_url configured, or Redis cannot be reached.
    """
    return producer.enqueue(settings, payloads, source)
