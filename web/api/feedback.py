"""POST /api/v1/feedback: impressions, clicks and "not interested" for the caller's own feed."""

from __future__ import annotations

from flask import g
from flask.wrappers import Response

from newsdesk.errors import InvalidInput
from newsdesk.interactions import LIVE_KINDS
from recsys import service as recsys_service
from web.api import bp, json_body, ok
from web.auth import db_session, token_required

MAX_EVENTS = 500


def parse_events(raw: object) -> list[tuple[str, str]]:
    """`[{"item_id", "kind"}, ...]` -> `[(item_id, kind), ...]`.

    Raises:
        InvalidInput: not a non-empty list of such objects; `details` names the first bad index.
    """
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("events must be a non-empty array", {"field": "events"})
    if len(raw) > MAX_EVENTS:
        raise InvalidInput(f"at most {MAX_EVENTS} events per request", {"field": "events"})
    events = []
    for i, event in enumerate(raw):
        if not isinstance(event, dict):
            raise InvalidInput(f"events[{i}] must be an object", {"field": "events", "index": i})
        item_id, kind = event.get("item_id"), event.get("kind")
        if not isinstance(item_id, str) or not item_id or len(item_id) > 128:
            raise InvalidInput(f"events[{i}].item_id must be a string of 1-128 characters",
                               {"field": "item_id", "index": i})
        if kind not in LIVE_KINDS:
            raise InvalidInput(f"events[{i}].kind must be one of {', '.join(LIVE_KINDS)}",
                               {"field": "kind", "index": i})
        events.append((item_id, kind))
    return events


@bp.post("/feedback")
@token_required("reader")
def feedback() -> Response:
    """Log the caller's events; 202 with the number logged."""
    events = parse_events(json_body(dict).get("events"))
    with db_session() as session:
        logged = recsys_service.log_events(session, g.api_user.username, events)
    return ok({"logged": logged}, 202)
