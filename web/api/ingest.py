"""POST /api/v1/ingest: financial messages in (one object or an array), ingest tokens only."""

from __future__ import annotations

import re

from flask import g, request
from flask.wrappers import Response

from monitor import service as monitor_service
from newsdesk.errors import InvalidInput, PayloadTooLarge
from web.api import bp, json_body, ok, settings
from web.auth import token_required
from web.extensions import runtime

MAX_ITEMS = 1000


@bp.post("/ingest")
@token_required("reader", kind="ingest")
def ingest() -> Response:
    """Queue (Redis configured) or store the messages; 202 with counts, 422 when every item is rejected."""
    limit = settings().monitor.ingest_max_bytes
    if request.content_length is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        raise InvalidInput("send a Content-Length (chunked bodies are not accepted)", {"field": "body"})
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes", {"limit": limit})
    body = json_body((dict, list))
    payloads = body if isinstance(body, list) else [body]
    if not payloads:
        raise InvalidInput("the array is empty", {"field": "body"})
    if len(payloads) > MAX_ITEMS:
        raise InvalidInput(f"at most {MAX_ITEMS} messages per request", {"field": "body"})
    bad = [{"index": i, "reason": "each message must be a JSON object"}
           for i, p in enumerate(payloads) if not isinstance(p, dict)]
    if bad:
        raise InvalidInput("some messages are not JSON objects", {"rejected": bad})
    source = "api:" + re.sub(r"[^A-Za-z0-9._:-]", "_", g.api_user.username)[:60]
    payloads = monitor_service.bind_source(payloads, source)  # a token writes under its own source only
    if settings().redis_url:
        queued = monitor_service.enqueue_messages(settings(), payloads, source)
        return ok({"queued": queued, "stored": 0, "duplicates": 0, "rejected": []}, 202)
    classifier = runtime().classifier()
    result = monitor_service.ingest_batch(settings().database_url, classifier, payloads, source)
    rejected = result.rejected
    if rejected and len(rejected) == len(payloads):
        raise InvalidInput("every message was rejected", {"rejected": rejected})
    return ok({"queued": 0, "stored": result.stored, "duplicates": result.duplicates, "rejected": rejected}, 202)
