"""POST /api/v1/ingest: financial messages in (one object or an array), ingest tokens only."""

from __future__ import annotations

import re

from flask import g, request
from flask.wrappers import Response

from newsdesk.errors import InvalidInput, NewsdeskError
from web.api import bp, json_body, ok, services, settings
from web.auth import token_required

MAX_ITEMS = 1000


class PayloadTooLarge(NewsdeskError):
    http_status = 413
    code = "payload_too_large"


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
    payloads = services().monitor.bind_source(payloads, source)  # a token writes under its own source only
    if settings().redis_url:
        queued = services().monitor.enqueue_messages(settings(), payloads, source)
        return ok({"queued": queued, "stored": 0, "duplicates": 0, "rejected": []}, 202)
    classifier = services().classifier()
    result = services().monitor.ingest_batch(settings().database_url, classifier, payloads, source)
    rejected = list(getattr(result, "rejected", []) or [])
    if rejected and len(rejected) == len(payloads):
        raise InvalidInput("every message was rejected", {"rejected": rejected})
    return ok({"queued": 0, "stored": result.stored, "duplicates": result.duplicates, "rejected": rejected}, 202)
