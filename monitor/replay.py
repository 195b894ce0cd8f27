"""Replay a JSONL file (gzip accepted) into the pipeline: directly, onto the Redis stream, or over HTTP.

Each line is a JSON object with `text` and optional `ts`, `id` (or `tweet_id`), `source`, `ticker`. With
`speed`, lines are paced by their timestamps (speed 60: one minute of stream per second); without, as fast as the
target takes them. Lines that are not valid JSON are sent as they are, so the pipeline dead-letters them.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from finetune.classifier import ClassifierHandle, SentimentClassifier
from monitor import producer
from monitor.ingest import parse_ts
from monitor.service import ingest_messages
from monitor.views import IngestResult, ReplayReport
from monitor.vocabulary import REPLAY_TARGETS, ReplayTarget
from newsdesk.db import session_scope
from newsdesk.errors import InvalidInput, NotFound, Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

def read_lines(path: str | Path, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; gzip detected by its magic bytes; invalid UTF-8 replaced.

    Raises:
        NotFound: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    count = 0
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for number, raw in enumerate(fh, 1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            yield number, line
            count += 1
            if limit is not None and count >= limit:
                return


def _line_ts(line: str) -> datetime | None:
    try:
        value = json.loads(line).get("ts")
        return parse_ts(value) if value else None
    except (ValueError, AttributeError, InvalidInput):
        return None


def replay_file(settings: Settings, path: str | Path, *, speed: float | None = None, to: str = "direct",
                limit: int | None = None, source: str = "replay", url: str | None = None, token: str = "",
                classifier: Any = None, progress: bool = True) -> ReplayReport:
    """Send the file's lines to `to` in micro-batches (batch_size lines or batch_wait_ms, whichever first).

    Raises:
        InvalidInput: unknown target or a non-positive speed.
        NotFound: no such file.
        Unavailable: Redis, the HTTP endpoint or the database cannot be reached.
    """
    if to not in REPLAY_TARGETS:
        raise InvalidInput(f"--to must be one of {', '.join(REPLAY_TARGETS)}", {"field": "to"})
    if speed is not None and speed <= 0:
        raise InvalidInput("--speed must be positive", {"field": "speed"})
    report = ReplayReport(path=str(path), to=to)
    send = _sender(settings, to, source, url, token, classifier, report)
    cfg = settings.monitor
    started = time.monotonic()
    first_ts: datetime | None = None
    batch: list[str] = []
    batch_started = time.monotonic()
    for _, line in tqdm(read_lines(path, limit), desc=f"replay -> {to}", unit="msg", disable=not progress,
                        total=limit):
        report.read += 1
        if speed is not None:
            ts = _line_ts(line)
            if ts is not None:
                first_ts = first_ts or ts
                due = started + (ts - first_ts).total_seconds() / speed
                while time.monotonic() < due:
                    if batch and time.monotonic() - batch_started >= cfg.batch_wait_ms / 1000:
                        send(batch)
                        batch = []
                    time.sleep(min(0.05, max(0.0, due - time.monotonic())))
        if not batch:
            batch_started = time.monotonic()
        batch.append(line)
        if len(batch) >= cfg.batch_size or (speed is not None and
                                             time.monotonic() - batch_started >= cfg.batch_wait_ms / 1000):
            send(batch)
            batch = []
    if batch:
        send(batch)
    report.seconds = time.monotonic() - started
    log.info("replayed %d lines from %s to %s in %.1f s", report.read, path, to, report.seconds)
    return report


def _sender(settings: Settings, to: str, source: str, url: str | None, token: str, classifier: Any,
            report: ReplayReport) -> Callable[[list[str]], None]:
    if to == ReplayTarget.DIRECT:
        handle = None if classifier is not None else ClassifierHandle(settings)

        def send_direct(lines: list[str]) -> None:
            model = classifier if classifier is not None else current_classifier(handle)
            with session_scope(settings.database_url) as session:
                result: IngestResult = ingest_messages(session, model, list(lines), source,
                                                       batch_size=settings.monitor.batch_size)
            report.ingest.add(result)
            report.sent += len(lines)

        return send_direct
    if to == ReplayTarget.REDIS:
        client = producer.connect(settings)

        def send_redis(lines: list[str]) -> None:
            report.sent += producer.enqueue(settings, list(lines), source, client=client)

        return send_redis
    target = url or f"http://{settings.web.host}:{settings.web.port}/api/v1/ingest"

    def send_http(lines: list[str]) -> None:
        items = []
        for line in lines:
            try:
                items.append(json.loads(line))
            except ValueError:
                items.append(line)
        _post(target, items, token)
        report.sent += len(lines)

    return send_http


def _post(url: str, items: list[Any], token: str) -> dict[str, Any]:
    body = json.dumps(items).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code == 422:  # per-item reasons: the valid ones were taken, the rest dead-lettered server-side
            return json.loads(exc.read() or b"{}")
        raise Unavailable(f"ingest endpoint {url} answered {exc.code}: {exc.read()[:200]!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise Unavailable(f"cannot reach the ingest endpoint {url}: {exc}") from exc


def current_classifier(handle: ClassifierHandle | None) -> SentimentClassifier | None:
    """The handle's current classifier, or None while no model is in service (messages then wait as pending)."""
    if handle is None:
        return None
    try:
        return handle.get()
    except Unavailable as exc:
        log.debug("no classifier: %s", exc.message)
        return None
