"""/api/v1/alerts: list with filters and pagination, detail, acknowledge, silence (analysts and admins)."""

from __future__ import annotations

from datetime import timedelta

from flask import g, request
from flask.wrappers import Response

from monitor import service as monitor_service
from monitor.views import AlertInfo
from monitor.vocabulary import ALERT_STATES, TICKER_MAX, normalise_ticker
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput
from newsdesk.inputs import strict_int
from web.api import bp, datetime_arg, int_arg, json_body, ok, page, parse_datetime
from web.auth import db_session, token_required

MAX_SILENCE_MINUTES = 30 * 24 * 60


def alert_filters() -> dict:
    """state/ticker/topic/rule_id/since from the query string, validated.

    Raises:
        InvalidInput: unknown state, bad rule id or date.
    """
    state = request.args.get("state") or None
    if state is not None and state not in ALERT_STATES:
        raise InvalidInput(f"state must be one of {', '.join(ALERT_STATES)}", {"field": "state"})
    ticker = normalise_ticker(request.args.get("ticker")) or None
    if ticker is not None and len(ticker) > TICKER_MAX:
        raise InvalidInput(f"ticker is at most {TICKER_MAX} characters", {"field": "ticker"})
    topic = " ".join((request.args.get("topic") or "").split()) or None
    if topic is not None and len(topic) > 64:
        raise InvalidInput("topic is at most 64 characters", {"field": "topic"})
    rule_id = request.args.get("rule_id") or None
    if rule_id is not None:
        rule_id = strict_int(rule_id, "rule_id", 1, 2**31 - 1)
    return {"state": state, "ticker": ticker, "topic": topic, "rule_id": rule_id, "since": datetime_arg("since")}


@bp.get("/alerts")
@token_required("analyst")
def list_alerts() -> Response:
    limit, offset = int_arg("limit", 50, 1, 500), int_arg("offset", 0, 0, 10_000_000)
    filters = alert_filters()
    with db_session() as session:
        alerts, total = monitor_service.list_alerts(session, limit=limit, offset=offset, **filters)
    return ok(page(alerts, total, limit, offset))


@bp.get("/alerts/<id:alert_id>")
@token_required("analyst")
def get_alert(alert_id: int) -> Response:
    with db_session() as session:
        return ok(monitor_service.get_alert(session, alert_id))


@bp.post("/alerts/<id:alert_id>/ack")
@token_required("analyst")
def acknowledge(alert_id: int) -> Response:
    note = json_body(dict).get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        raise InvalidInput("note must be a string of at most 2000 characters", {"field": "note"})
    with db_session() as session:
        return ok(monitor_service.acknowledge_alert(session, alert_id, g.api_user.username, note=note))


def silence_end(body: dict) -> object:
    """`ends_at` (ISO-8601, in the future) or `duration_minutes` (1 .. 30 days) -> naive UTC end time.

    Raises:
        InvalidInput: neither given, both bad, or in the past.
    """
    if "ends_at" in body:
        ends_at = parse_datetime(body["ends_at"], "ends_at")
        if ends_at <= utcnow():
            raise InvalidInput("ends_at must be in the future", {"field": "ends_at"})
        if ends_at > utcnow() + timedelta(minutes=MAX_SILENCE_MINUTES):
            raise InvalidInput("a silence lasts at most 30 days", {"field": "ends_at"})
        return ends_at
    minutes = body.get("duration_minutes")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_SILENCE_MINUTES:
        raise InvalidInput(f"give ends_at or duration_minutes (an integer from 1 to {MAX_SILENCE_MINUTES})",
                           {"field": "duration_minutes"})
    return utcnow() + timedelta(minutes=minutes)


def silence_matchers(alert: AlertInfo) -> dict[str, str | int]:
    """Silence what this alert is about: its ticker, topic (for a topic-scoped rule) and rule."""
    return {key: value for key, value in (("ticker", alert.ticker), ("topic", alert.topic), ("rule_id", alert.rule_id))
            if value not in (None, "")}


@bp.post("/alerts/<id:alert_id>/silence")
@token_required("analyst")
def silence(alert_id: int) -> Response:
    body = json_body(dict)
    ends_at = silence_end(body)
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 2000:
        raise InvalidInput("comment must be a string of at most 2000 characters", {"field": "comment"})
    with db_session() as session:
        alert = monitor_service.get_alert(session, alert_id)
        result = monitor_service.create_silence(session, silence_matchers(alert), ends_at, g.api_user.username,
                                                comment=comment)
    return ok(result, 201)
