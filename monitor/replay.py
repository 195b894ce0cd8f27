"""Replay a JSONL file (gzip accepted) into the pipeline: directly, onto the Redis stream, or over HTTP.

Each line is a JSON object with `text` and optional `ts`, `id` (or `tweet_id`), `source`, `ticker`. With
`speed`, lines are paced by their timestamps (speed 60: one minute of stream per second); without, as fast as the
target takes them. Lines that are not valid JSON are sent as they are, so the pipeline dead-letters them.

A target that goes away (Redis restarted, the database or the web app down) pauses the replay: the batch is sent
again with capped exponential backoff for up to `retry_for_s`, and the replay goes on from there (a batch sent twice
is harmless: storage is idempotent). If the target stays down longer, the error names the lines already sent, and
`skip` continues after them.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from finetune.classifier import ClassifierHandle, SentimentClassifier
from monitor import producer
from monitor.ingest import parse_ts
from monitor.service import ingest_batch
from monitor.views import IngestResult, ReplayReport
from monitor.vocabulary import REPLAY_TARGETS, ReplayTarget
from newsdesk.errors import InvalidInput, NotFound, Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

def read_lines(path: str | Path, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line; gzip detected by its magic bytes; invalid UTF-8 replaced.

    Raises:
        NotFound: no such file.
        InvalidInput: the file cannot be read on (a truncated or corrupt gzip), after the lines before it.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    count, number = 0, 0
    with opener(path, "rb") as fh:  # type: ignore[operator]
        lines = iter(fh)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                what = "truncated or corrupt gzip" if gz else "read error"
                raise InvalidInput(f"{path}:{number + 1}: cannot read on ({what}: {exc})",
                                   {"path": str(path), "line": number + 1}) from None
            number += 1
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            yield number, line
            count += 1
            if limit is not None and count >= limit:
                return


def _reading(lines: Iterator[tuple[int, str]], report: ReplayReport) -> Iterator[tuple[int, str]]:
    """The lines until the file cannot be read on; then the error goes in `report.error` (what was read is kept)."""
    try:
        yield from lines
    except InvalidInput as exc:
        log.warning("replay stopped early: %s", exc.message)
        report.error = exc.message


def _line_ts(line: str) -> datetime | None:
    try:
        value = json.loads(line).get("ts")
        return parse_ts(value) if value else None
    except (ValueError, AttributeError, InvalidInput):
        return None


RETRY_FOR_S = 600.0  # how long one batch is retried while its target is down
MAX_BACKOFF_S = 30.0


def replay_file(settings: Settings, path: str | Path, *, speed: float | None = None, to: str = "direct",
                limit: int | None = None, source: str = "replay", url: str | None = None, token: str = "",
                classifier: Any = None, progress: bool = True, skip: int = 0,
                retry_for_s: float = RETRY_FOR_S) -> ReplayReport:
    """Send the file's lines to `to` in micro-batches (batch_size lines or batch_wait_ms, whichever first), after
    skipping the first `skip` lines; an unreachable target is retried with backoff for `retry_for_s` per batch.

    Raises:
        InvalidInput: unknown target, a non-positive speed or a negative skip.
        NotFound: no such file.
        Unavailable: Redis, the HTTP endpoint or the database stayed unreachable for `retry_for_s`.
    """
    if to not in REPLAY_TARGETS:
        raise InvalidInput(f"--to must be one of {', '.join(REPLAY_TARGETS)}", {"field": "to"})
    if speed is not None and speed <= 0:
        raise InvalidInput("--speed must be positive", {"field": "speed"})
    if skip < 0:
        raise InvalidInput("--skip must not be negative", {"field": "skip"})
    report = ReplayReport(path=str(path), to=to)
    send = _retrying(_sender(settings, to, source, url, token, classifier, report), report, skip, retry_for_s)
    cfg = settings.monitor
    started = time.monotonic()
    first_ts: datetime | None = None
    batch: list[str] = []
    batch_started = time.monotonic()
    lines = _reading(read_lines(path, None if limit is None else limit + skip), report)
    for n, (_, line) in enumerate(tqdm(lines, desc=f"replay -> {to}", unit="msg", disable=not progress,
                                       total=limit)):
        if n < skip:
            continue
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


def _retrying(send: Callable[[list[str]], None], report: ReplayReport, skip: int,
              retry_for_s: float) -> Callable[[list[str]], None]:
    """`send`, retried with capped exponential backoff (0.5 s, 1 s, ... 30 s) while its target is unavailable."""

    def send_with_retry(lines: list[str]) -> None:
        deadline = time.monotonic() + retry_for_s
        delay = 0.5
        while True:
            try:
                send(lines)
                return
            except Unavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    done = skip + report.sent
                    raise Unavailable(f"{exc.message}; gave up after {retry_for_s:.0f} s with {report.sent} lines "
                                      f"sent: continue with --skip {done}", {"sent": done}) from exc
                log.warning("replay paused (%s); retrying in %.1f s", exc.message, min(delay, left))
                time.sleep(min(delay, left))
                delay = min(delay * 2, MAX_BACKOFF_S)

    return send_with_retry


def _sender(settings: Settings, to: str, source: str, url: str | None, token: str, classifier: Any,
            report: ReplayReport) -> Callable[[list[str]], None]:
    if to == ReplayTarget.DIRECT:
        handle = None if classifier is not None else ClassifierHandle(settings)

        def send_direct(lines: list[str]) -> None:
            model = classifier if classifier is not None else current_classifier(handle)
            result: IngestResult = ingest_batch(settings.database_url, model, list(lines), source,
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
