"""Webhook delivery of alert notifications (outbox rows) with retries, backoff and a record of every attempt.

A receiver that is down delays a notification, it does not lose it: failed sends are retried with capped
exponential backoff (2 s, 4 s, ... at most `max_backoff_s`) for `retry_for_s` (hours by default, the
`monitor.webhook_retry_hours` setting) from the first attempt or the operator's last retry; only then is the row
marked failed. Undelivered rows are listed for the console (`undelivered`) and an operator can send them again
(`retry`).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from monitor.tables import Notification
from newsdesk.db import utcnow

log = logging.getLogger(__name__)

BACKOFF_S = 2.0  # first retry after 2 s, then 4, 8, 16 (capped at MAX_BACKOFF_S)
MAX_BACKOFF_S = 300.0
RETRY_FOR_S = 24 * 3600.0  # give up after a day of failures (the setting's default)
TIMEOUT_S = 5.0
UNDELIVERED = ("pending", "failed")


def fan_out(session: Session, urls: Sequence[str]) -> int:
    """Give each new outbox row (url "") one row per configured URL; with no URL they are marked skipped."""
    rows = session.scalars(select(Notification).where(Notification.url == "", Notification.status == "pending")
                           .with_for_update(skip_locked=True))
    n = 0
    for row in rows:
        if not urls:
            row.status = "skipped"
            continue
        row.url = urls[0]
        for url in urls[1:]:
            session.add(Notification(alert_id=row.alert_id, event=row.event, url=url, payload=row.payload,
                                     status="pending", attempts=[], next_attempt_at=row.next_attempt_at,
                                     dedup_key=f"{row.dedup_key}>{url}"[:200] if row.dedup_key else None))
        n += len(urls)
    session.flush()
    return n


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_S, key: str = "") -> int:
    """POST `payload` as JSON; returns the HTTP status (raises OSError/URLError on transport failure). `key` goes
    in an Idempotency-Key header (one per notification), so a receiver can drop a resend it already has."""
    body = json.dumps(payload, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "newsdesk-monitor"}
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def deliver_pending(session: Session, urls: Sequence[str], *, now: datetime | None = None,
                    retry_for_s: float = RETRY_FOR_S, backoff_s: float = BACKOFF_S,
                    max_backoff_s: float = MAX_BACKOFF_S, max_attempts: int | None = None,
                    limit: int = 100) -> dict[str, int]:
    """Send due notifications once each; a 2xx marks delivered, anything else schedules a retry with backoff.

    Every attempt is appended to the row's `attempts` (time, status code or error, milliseconds). A row is marked
    failed once the next retry would fall more than `retry_for_s` after its first attempt (or its last operator
    retry), or after `max_attempts` attempts when given. Returns counts of delivered, retried and failed rows.
    Rows are locked while being sent (FOR UPDATE SKIP LOCKED on PostgreSQL), so two workers never send one twice.
    """
    fan_out(session, urls)
    now = now or utcnow()
    due = session.scalars(select(Notification).where(Notification.status == "pending", Notification.url != "",
                                                     Notification.next_attempt_at <= now)
                          .order_by(Notification.id).limit(limit).with_for_update(skip_locked=True)).all()
    counts = {"delivered": 0, "retried": 0, "failed": 0}
    for row in due:
        started = time.perf_counter()
        code, error = None, ""
        try:
            code = post_json(row.url, row.payload, key=row.dedup_key or f"notification-{row.id}")
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = {"at": utcnow().isoformat() + "Z", "status_code": code, "error": error,
                   "ms": round((time.perf_counter() - started) * 1000, 1)}
        row.attempts = [*(row.attempts or []), attempt]
        if row.retry_since is None:
            row.retry_since = now
        failures = _failures_since_retry(row)
        delay = min(backoff_s * 2 ** max(failures - 1, 0), max_backoff_s)
        if code is not None and 200 <= code < 300:
            row.status = "delivered"
            counts["delivered"] += 1
        elif (max_attempts is not None and sum(1 for a in row.attempts if not a.get("retry")) >= max_attempts) or \
                (now + timedelta(seconds=delay) - row.retry_since).total_seconds() > retry_for_s:
            row.status = "failed"
            counts["failed"] += 1
            log.warning("webhook %s failed %d times for alert %s; giving up (retry it from the console)", row.url,
                        len(row.attempts), row.alert_id)
        else:
            row.next_attempt_at = now + timedelta(seconds=delay)
            counts["retried"] += 1
        row.updated_at = utcnow()
    session.flush()
    return counts


def _failures_since_retry(row: Notification) -> int:
    """Failed attempts since the operator's last retry (a {"retry": ...} marker in `attempts`), at least 1."""
    n = 0
    for attempt in reversed(row.attempts or []):
        if attempt.get("retry"):
            break
        n += 1
    return max(n, 1)


def undelivered(session: Session, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Notifications not delivered yet: failed ones, and pending ones that have failed at least once."""
    query = select(Notification).where(Notification.url != "", or_(
        Notification.status == "failed",
        (Notification.status == "pending") & Notification.retry_since.is_not(None)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Notification.id.desc()).limit(limit))
    return [notification_info(r) for r in rows], total


def notification_info(row: Notification) -> dict[str, Any]:
    sent = [a for a in row.attempts or [] if not a.get("retry")]
    last = sent[-1] if sent else {}
    return {"id": row.id, "alert_id": row.alert_id, "event": row.event, "url": row.url, "status": row.status,
            "attempts": len(sent), "last_error": last.get("error") or
            (f"HTTP {last['status_code']}" if last.get("status_code") else ""),
            "last_attempt_at": last.get("at"), "next_attempt_at": row.next_attempt_at, "created_at": row.created_at}


def retry(session: Session, ids: Sequence[int] | None = None, *, actor: str = "", now: datetime | None = None) -> int:
    """Send undelivered notifications again now (all, or those in `ids`), with a fresh retry period and backoff."""
    now = now or utcnow()
    query = select(Notification).where(Notification.url != "", Notification.status.in_(UNDELIVERED))
    if ids is not None:
        query = query.where(Notification.id.in_(list(ids)))
    n = 0
    for row in session.scalars(query.with_for_update(skip_locked=True)):
        row.status, row.next_attempt_at, row.retry_since = "pending", now, now
        row.attempts = [*(row.attempts or []), {"at": utcnow().isoformat() + "Z", "retry": actor or "operator"}]
        row.updated_at = utcnow()
        n += 1
    session.flush()
    if n:
        log.info("%d webhook notifications queued for another try", n)
    return n
