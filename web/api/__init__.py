"""The JSON API under /api/v1: one module per resource; shared request parsing and response encoding."""

from __future__ import annotations

import dataclasses
import enum
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.wrappers import Response

from newsdesk.errors import InvalidInput
from newsdesk.inputs import strict_int

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def register(app: Flask) -> None:
    """Attach every resource module's routes, then the blueprint."""
    from web.api import (  # noqa: F401 - routes
        alerts,
        delivery,
        feedback,
        ingest,
        messages,
        models,
        openapi,
        recommendations,
        rules,
    )

    app.register_blueprint(bp)


def settings() -> Any:
    return current_app.config["NEWSDESK_SETTINGS"]


_PLAIN = frozenset({str, int, float, bool, type(None)})


def to_json(value: Any) -> Any:
    """Dataclasses, named tuples, enums and datetimes -> plain JSON values (naive datetimes are UTC)."""
    if type(value) in _PLAIN:  # most values: skip the checks below
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_json(v) for v in value]
    if hasattr(value, "_asdict"):
        return to_json(value._asdict())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "__dict__"):
        return {k: to_json(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def ok(payload: Any, status: int = 200) -> Response:
    response = jsonify(to_json(payload))
    response.status_code = status
    return response


def json_body(kind: type | tuple[type, ...] = dict) -> Any:
    """The request's JSON body, checked to be of `kind`.

    Raises:
        InvalidInput: not JSON, unparsable, or the wrong shape.
    """
    if not request.is_json:
        raise InvalidInput("the body must be JSON (Content-Type: application/json)", {"field": "body"})
    data = request.get_json(silent=True)
    if data is None:
        raise InvalidInput("the body is not valid JSON", {"field": "body"})
    if not isinstance(data, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise InvalidInput(f"the body must be a JSON {names.replace('dict', 'object').replace('list', 'array')}",
                           {"field": "body"})
    return data


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A bounded integer query parameter.

    Raises:
        InvalidInput: not an integer or out of [low, high].
    """
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    return strict_int(raw, name, low, high)  # ASCII digits only: int() alone reads '٣' as 3


def datetime_arg(name: str) -> datetime | None:
    """An ISO-8601 query parameter as naive UTC, or None.

    Raises:
        InvalidInput: not a date/time.
    """
    raw = request.args.get(name)
    if not raw:
        return None
    return parse_datetime(raw, name)


def parse_datetime(raw: Any, field: str) -> datetime:
    """ISO-8601 text -> naive UTC datetime.

    Raises:
        InvalidInput: not a date/time.
    """
    from datetime import timezone

    if not isinstance(raw, str):
        raise InvalidInput(f"{field} must be an ISO-8601 date/time string", {"field": field})
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        if value.tzinfo is not None:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC: OverflowError
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{field} must be an ISO-8601 date/time in years 1-9999 UTC, got {raw[:40]!r}",
                           {"field": field}) from None
    return value


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    """The pagination envelope of every list endpoint."""
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None}
