"""Errors -> responses: JSON `{"error": {code, message, details}}` under /api, an error page elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from newsdesk.errors import NewsdeskError

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_input",
              429: "too_many_requests", 503: "unavailable"}


def wants_json() -> bool:
    """API paths and the event stream answer JSON; pages answer HTML."""
    return request.path.startswith("/api/") or request.path.startswith("/events") or request.is_json or \
        request.accept_mimetypes.best == "application/json"


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """The one JSON error shape, or the error page for browsers."""
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    else:
        response = Response(render_template("error.html", status=status, code=code, message=message,
                                            request_id=getattr(g, "request_id", "")), mimetype="text/html")
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers for our errors, HTTP errors, CSRF failures and everything else."""

    @app.errorhandler(NewsdeskError)
    def _newsdesk(exc: NewsdeskError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s on %s: %s", exc.code, request.path, exc.message)
        return error_response(exc.http_status, exc.code, exc.message, exc.details)

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Response:
        return error_response(400, "csrf_failed", f"CSRF check failed: {exc.description}")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        response = error_response(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        request_id = getattr(g, "request_id", "")
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, request_id)
        return error_response(500, "internal", "internal error", {"request_id": request_id})
