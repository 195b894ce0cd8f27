"""Webhook delivery of alert notifications (outbox rows) with retries, backoff and a record of every attempt."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.tables import Notification
from newsdesk.db import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_S = 2.0  # first retry after 2 s, then 4, 8, 16 (capped at MAX_BACKOFF_S)
MAX_BACKOFF_S = 300.0
TIMEOUT_S = 5.0


def fan_out(session: Session, urls: Sequence[str]) -> int:
    """Give each new outbox row (url "") one row per configured URL; with no URL they are marked skipped."""
    rows = session.scalars(select(Notification).where(Notification.url == "", Notification.status == "pending"))
    n = 0
    for row in rows:
        if not urls:
            row.status = "skipped"
            continue
        row.url = urls[0]
        for url in urls[1:]:
            session.add(Notification(alert_id=row.alert_id, event=row.event, url=url, payload=row.payload,
                                     status="pending", attempts=[], next_attempt_at=row.next_attempt_at))
        n += len(urls)
    session.flush()
    return n


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_S) -> int:
    """POST `payload` as JSON; returns the HTTP status (raises OSError/URLError on transport failure)."""
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "newsdesk-monitor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def deliver_pending(session: Session, urls: Sequence[str], *, now: datetime | None = None,
                    max_attempts: int = MAX_ATTEMPTS, backoff_s: float = BACKOFF_S,
                    limit: int = 100) -> dict[str, int]:
    """Send due notifications once each; a 2xx marks delivered, anything else schedules a retry with backoff.

    Every attempt is appended to the row's `attempts` (time, status code or error, milliseconds). After
    `max_attempts` failures the row is marked failed. Returns counts of delivered, retried and failed rows.
    """
    fan_out(session, urls)
    now = now or utcnow()
    due = session.scalars(select(Notification).where(Notification.status == "pending", Notification.url != "",
                                                     Notification.next_attempt_at <= now)
                          .order_by(Notification.id).limit(limit)).all()
    counts = {"delivered": 0, "retried": 0, "failed": 0}
    for row in due:
        started = time.perf_counter()
        code, error = None, ""
        try:
            code = post_json(row.url, row.payload)
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempt = {"at": utcnow().isoformat() + "Z", "status_code": code, "error": error,
                   "ms": round((time.perf_counter() - started) * 1000, 1)}
        row.attempts = [*(row.attempts or []), attempt]
        if code is not None and 200 <= code < 300:
            row.status = "delivered"
            counts["delivered"] += 1
        elif len(row.attempts) >= max_attempts:
            row.status = "failed"
            counts["failed"] += 1
            log.warning("webhook %s failed %d times for alert %s", row.url, len(row.attempts), row.alert_id)
        else:
            delay = min(backoff_s * 2 ** (len(row.attempts) - 1), MAX_BACKOFF_S)
            row.next_attempt_at = now + timedelta(seconds=delay)
            counts["retried"] += 1
        row.updated_at = utcnow()
    session.flush()
    return counts
