"""Error classes shared by every package; each carries its CLI exit code, HTTP status and stable code."""

from __future__ import annotations

from typing import Any


class NewsdeskError(Exception):
    """Base of every error newsdesk raises on purpose (never raised bare)."""

    exit_code = 1
    http_status = 500
    code = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(NewsdeskError):
    """Bad row, field, label or argument; `details` names the row/field."""

    exit_code = 3
    http_status = 422
    code = "invalid_input"


class NotFound(NewsdeskError):
    """Unknown item, user, version, alert."""

    exit_code = 4
    http_status = 404
    code = "not_found"


class Conflict(NewsdeskError):
    """Duplicate or state conflict."""

    exit_code = 5
    http_status = 409
    code = "conflict"


class GateRejected(Conflict):
    """A challenger model did not beat the champion by the required margin."""

    code = "gate_rejected"


class PayloadTooLarge(InvalidInput):
    """A request body (or file) over the configured size limit."""

    http_status = 413
    code = "payload_too_large"


class Forbidden(NewsdeskError):
    """The role does not allow it."""

    exit_code = 6
    http_status = 403
    code = "forbidden"


class Unavailable(NewsdeskError):
    """Database, Redis, model or index not ready; retryable."""

    exit_code = 7
    http_status = 503
    code = "unavailable"
