"""Server-sent events for the dashboard: polls `monitor.service.changes_since` and streams what changed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context

from monitor import service as monitor_service
from newsdesk.db import session_scope
from newsdesk.errors import NewsdeskError
from web.api import to_json
from web.auth import role_required

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__, url_prefix="/events")

KEEPALIVE_S = 15.0
BUSY_RETRY_MS = 5000


class StreamSlots:
    """At most `size` event streams at once per process, so that open dashboards never hold every server thread
    (beyond the cap a stream answers `retry:` and closes at once; the browser's EventSource comes back later)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._free = threading.BoundedSemaphore(self.size)

    def take(self) -> Callable[[], None] | None:
        """A release function when a slot is free (call it once; later calls do nothing), else None."""
        if not self._free.acquire(blocking=False):
            return None
        done = threading.Event()

        def release() -> None:
            if not done.is_set():
                done.set()
                self._free.release()

        return release


def _busy() -> Response:
    body = f"retry: {BUSY_RETRY_MS}\nevent: busy\ndata: {{}}\n\n"
    return Response(body, mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


def _encode_cursor(cursor: Any) -> str:
    return json.dumps(to_json(cursor), separators=(",", ":"))


def _decode_cursor(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


@bp.route("/stream")
@role_required("analyst")
def stream() -> Response:
    """`text/event-stream` of alert and message changes; resumes from `Last-Event-ID`; ends after a while
    (the browser's EventSource reconnects on its own) so a server thread is never held for ever."""
    app = current_app._get_current_object()
    settings = app.config["NEWSDESK_SETTINGS"]
    poll_s = float(app.config.get("SSE_POLL_S", 1.0))
    max_s = float(app.config.get("SSE_MAX_S", settings.web.event_stream_max_s))
    cursor = _decode_cursor(request.headers.get("Last-Event-ID") or request.args.get("cursor"))
    fresh = cursor is None
    release = app.extensions["newsdesk_event_slots"].take()
    if release is None:
        return _busy()
    try:
        # Fail before streaming (503 JSON) when the monitor is not there: a stream can't change its status later.
        with session_scope(settings.database_url) as session:
            first_events, cursor = monitor_service.changes_since(session, cursor)
    except BaseException:
        release()
        raise
    if fresh:
        first_events = []  # a new page already shows the current state: only stream what changes from now

    def generate() -> Iterator[str]:
        try:
            yield from _events(first_events)
        finally:
            release()

    def _events(events: list[Any]) -> Iterator[str]:
        nonlocal cursor
        yield f"retry: 2000\nid: {_encode_cursor(cursor)}\nevent: hello\ndata: {{}}\n\n"
        deadline, last_sent = time.monotonic() + max_s, time.monotonic()
        while True:
            for event in events:
                yield f"id: {_encode_cursor(cursor)}\nevent: change\ndata: {json.dumps(to_json(event))}\n\n"
                last_sent = time.monotonic()
            if time.monotonic() >= deadline:
                return
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            time.sleep(poll_s)
            try:
                with session_scope(settings.database_url) as session:
                    events, cursor = monitor_service.changes_since(session, cursor)
            except NewsdeskError as exc:
                log.warning("event stream: %s", exc.message)
                yield f"event: problem\ndata: {json.dumps({'message': exc.message})}\n\n"
                return

    response = Response(stream_with_context(generate()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(release)  # also when the generator never started
    return response
