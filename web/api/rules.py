"""/api/v1/rules: list, create and change alert rules, their ticker and topic scope included (analysts)."""

from __future__ import annotations

from typing import Any

from flask.wrappers import Response

from monitor import service as monitor_service
from newsdesk.errors import InvalidInput
from web.api import bp, json_body, ok
from web.auth import db_session, token_required

CREATE_FIELDS = {"name", "kind", "params", "tickers", "topics", "severity", "repeat_interval_s", "enabled"}
CHANGE_FIELDS = CREATE_FIELDS - {"kind"}


def rule_body(allowed: set[str]) -> dict[str, Any]:
    """The JSON body of a rule request, its fields checked against `allowed` and their basic types.

    Raises:
        InvalidInput: not an object, an unknown field, or a field of the wrong type.
    """
    body = json_body(dict)
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInput(f"unknown field {min(unknown)!r}", {"field": min(unknown)})
    for key, kind in (("name", str), ("kind", str), ("params", dict), ("severity", str), ("enabled", bool)):
        if key in body and not isinstance(body[key], kind):
            raise InvalidInput(f"{key!r} has the wrong type", {"field": key})
    for key in ("tickers", "topics"):
        if key in body and not (isinstance(body[key], list) and all(isinstance(v, str) for v in body[key])):
            raise InvalidInput(f"{key!r} must be a list of strings", {"field": key})
    return body


@bp.get("/rules")
@token_required("analyst")
def list_rules() -> Response:
    with db_session() as session:
        return ok({"items": monitor_service.list_rules(session)})


@bp.post("/rules")
@token_required("analyst")
def create_rule() -> Response:
    body = rule_body(CREATE_FIELDS)
    for key in ("name", "kind"):
        if key not in body:
            raise InvalidInput(f"missing field {key!r}", {"field": key})
    name, kind, params = body.pop("name"), body.pop("kind"), body.pop("params", None)
    with db_session() as session:
        rule = monitor_service.create_rule(session, name, kind, params, **body)
    return ok(rule, 201)


@bp.patch("/rules/<id:rule_id>")
@token_required("analyst")
def change_rule(rule_id: int) -> Response:
    changes = rule_body(CHANGE_FIELDS)
    with db_session() as session:
        return ok(monitor_service.update_rule(session, rule_id, **changes))
