"""/api/v1/dead-letters and /api/v1/notifications: what did not get through (an outage, a bug) and sending it again.

Analysts and admins: dead letters (replay one, edited or not, dismiss one, replay in bulk), the undelivered webhook
notifications and an operator retry.
"""

from __future__ import annotations

from flask import g
from flask.wrappers import Response

from monitor import service as monitor_service
from newsdesk.errors import InvalidInput
from web.api import bp, int_arg, json_body, ok, page
from web.auth import db_session, token_required
from web.extensions import runtime

STAGES = ("validate", "classify", "process")


@bp.post("/dead-letters/replay")
@token_required("analyst")
def replay_dead_letters() -> Response:
    """Replay every open dead letter, optionally only those whose reason contains `reason` or of one `stage`."""
    body = json_body(dict)
    reason, stage = body.get("reason"), body.get("stage")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise InvalidInput("reason must be a string of at most 200 characters", {"field": "reason"})
    if stage is not None and stage not in STAGES:
        raise InvalidInput(f"stage must be one of {', '.join(STAGES)}", {"field": "stage"})
    classifier = runtime().classifier()
    with db_session() as session:
        out = monitor_service.replay_dead_letters(session, classifier, reason=reason or None, stage=stage,
                                                  actor=g.api_user.username)
    return ok(out)


@bp.post("/dead-letters/<id:dead_letter_id>/replay")
@token_required("analyst")
def replay_dead_letter(dead_letter_id: int) -> Response:
    """Replay one open dead letter; with `payload` (the raw line, edited) that text is ingested instead."""
    payload = json_body(dict).get("payload")
    if payload is not None and not isinstance(payload, str):
        raise InvalidInput("payload must be a string (the raw message line)", {"field": "payload"})
    classifier = runtime().classifier()
    with db_session() as session:
        return ok(monitor_service.replay_dead_letter(session, classifier, dead_letter_id, payload=payload,
                                                     actor=g.api_user.username))


@bp.post("/dead-letters/<id:dead_letter_id>/dismiss")
@token_required("analyst")
def dismiss_dead_letter(dead_letter_id: int) -> Response:
    """Close one open dead letter without replaying it, with an optional `note`."""
    note = json_body(dict).get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        raise InvalidInput("note must be a string of at most 500 characters", {"field": "note"})
    with db_session() as session:
        return ok(monitor_service.dismiss_dead_letter(session, dead_letter_id, g.api_user.username, note=note))


@bp.get("/notifications/undelivered")
@token_required("analyst")
def undelivered_notifications() -> Response:
    limit = int_arg("limit", 50, 1, 500)
    with db_session() as session:
        items, total = monitor_service.undelivered_notifications(session, limit)
    return ok(page(items, total, limit, 0))


@bp.post("/notifications/retry")
@token_required("analyst")
def retry_notifications() -> Response:
    """Send undelivered notifications again now: all, or the `ids` given."""
    ids = json_body(dict).get("ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) > 1000 or
                            not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31 for i in ids)):
        raise InvalidInput("ids must be a list of at most 1000 positive integers", {"field": "ids"})
    with db_session() as session:
        n = monitor_service.retry_notifications(session, ids, actor=g.api_user.username)
    return ok({"queued": n})
