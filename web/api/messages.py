"""/api/v1/messages and /api/v1/topics: the latest classified messages (with sentiment and topic) for analysts."""

from __future__ import annotations

from flask import request
from flask.wrappers import Response

from monitor import service as monitor_service
from monitor.vocabulary import TICKER_MAX, normalise_ticker
from newsdesk.errors import InvalidInput
from web.api import bp, int_arg, ok
from web.auth import db_session, token_required


def topic_arg() -> str | None:
    """The `topic` query parameter with its spacing normalised, or None.

    Raises:
        InvalidInput: longer than 64 characters.
    """
    topic = " ".join((request.args.get("topic") or "").split()) or None
    if topic is not None and len(topic) > 64:
        raise InvalidInput("topic is at most 64 characters", {"field": "topic"})
    return topic


@bp.get("/messages")
@token_required("analyst")
def list_messages() -> Response:
    limit = int_arg("limit", 50, 1, 500)
    ticker = normalise_ticker(request.args.get("ticker")) or None
    if ticker is not None and len(ticker) > TICKER_MAX:
        raise InvalidInput(f"ticker is at most {TICKER_MAX} characters", {"field": "ticker"})
    with db_session() as session:
        rows = monitor_service.latest_messages(session, limit=limit, ticker=ticker, topic=topic_arg())
    return ok({"items": rows})


@bp.get("/topics")
@token_required("analyst")
def list_topics() -> Response:
    with db_session() as session:
        return ok({"items": monitor_service.list_topics(session)})
