"""GET /api/v1/recommendations and /api/v1/history: a user's own feed and history (admin may name a user)."""

from __future__ import annotations

from flask import g, request
from flask.wrappers import Response

from newsdesk.errors import Forbidden, InvalidInput
from recsys import service as recsys_service
from web.api import bp, int_arg, ok, settings
from web.auth import db_session, token_required
from web.users import require_user


def target_user() -> str:
    """The user asked about: the caller, or `?user=` for an admin.

    Raises:
        Forbidden: a non-admin asks about someone else.  NotFound: unknown user.
    """
    name = request.args.get("user") or g.api_user.username
    if name != g.api_user.username and not g.api_user.is_admin:
        raise Forbidden("you may only read your own feed and history", {"user": name})
    if len(name) > 128:
        raise InvalidInput("user is at most 128 characters", {"field": "user"})
    return name


@bp.get("/recommendations")
@token_required("reader")
def recommendations() -> Response:
    """Ranked items for the caller, each with its score and reason."""
    k = int_arg("k", 10, 1, 100)
    name = target_user()
    with db_session() as session:
        topics = g.api_user.topics if name == g.api_user.username else require_user(session, name).topics
        recs = recsys_service.recommend_for_user(session, settings(), name, k=k, topics=tuple(topics or ()))
    return ok({"user": name, "k": k, "items": recs})


@bp.get("/history")
@token_required("reader")
def history() -> Response:
    """The user's interactions, newest first."""
    limit = int_arg("limit", 50, 1, 500)
    name = target_user()
    with db_session() as session:
        require_user(session, name)
        rows = recsys_service.user_history(session, name, limit=limit)
    return ok({"user": name, "items": rows})
