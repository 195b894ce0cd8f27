"""web: the Flask app (reader feed, analyst dashboard, model console, JSON API, health)."""

from __future__ import annotations

import logging
import math
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter

from newsdesk import inputs
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings

if TYPE_CHECKING:
    from monitor.views import AlertInfo
    from newsdesk.runtime import Runtime

log = logging.getLogger(__name__)

# Content-Security-Policy: everything from this origin, no inline scripts (data travels in JSON script tags).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def create_app(settings: Settings, *, runtime: Runtime | None = None, start_worker: bool = False,
               testing: bool = False) -> Flask:
    """Build the app: config, extensions, blueprints, error handlers (and the in-process worker if asked).

    `runtime` is the process's composition root (built here when not given; tests pass one built with fakes);
    with `start_worker` the worker runs in this process and shares the runtime's classifier handle.
    """
    from newsdesk.runtime import Runtime  # here, not at the top: `import web.tables` must not load the models
    from web import api, auth, console, dashboard, events, feed, health, rules
    from web.errors import register_error_handlers
    from web.extensions import RequestMetrics, csrf, login_manager
    from web.throttle import LoginThrottle

    app = Flask(__name__)
    app.json = GuardedJSONProvider(app)
    app.url_map.converters["id"] = IdConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=testing,
        NEWSDESK_SETTINGS=settings,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="newsdesk_session",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.web.session_minutes),
        SESSION_COOKIE_SECURE=settings.web.secure_cookies,
        REMEMBER_COOKIE_SECURE=settings.web.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life
        MAX_CONTENT_LENGTH=settings.monitor.ingest_max_bytes + 1024,
        JSON_SORT_KEYS=False,
    )
    if settings.web.trusted_proxies > 0:  # the client address and scheme as the proxies in front saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.web.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n)  # type: ignore[method-assign]
    app.jinja_env.autoescape = True  # also for non-.html templates; item text and tweets are untrusted
    runtime = runtime if runtime is not None else Runtime(settings)
    app.extensions["newsdesk_runtime"] = runtime
    app.extensions["newsdesk_throttle"] = LoginThrottle(settings)
    app.extensions["newsdesk_metrics"] = RequestMetrics()
    app.extensions["newsdesk_event_slots"] = events.StreamSlots(settings.web.event_stream_slots)

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"
    csrf.init_app(app)

    for blueprint in (auth.bp, feed.bp, dashboard.bp, rules.bp, console.bp, events.bp, health.bp):
        app.register_blueprint(blueprint)
    api.register(app)
    csrf.exempt(api.bp)  # bearer tokens, never cookies: nothing for a forged cross-site request to ride on
    register_error_handlers(app)
    _install_hooks(app)
    _register_template_helpers(app)

    if start_worker:
        runtime.start_worker()
    return app


class GuardedJSONProvider(DefaultJSONProvider):
    """Request bodies parsed with a depth limit: JSON nested 100,000 deep is a 422, never a RecursionError."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return inputs.loads(s, strings=False)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Endpoints that check the strings of each item themselves (a bad item is dead-lettered, its batch kept).
PER_ITEM_ENDPOINTS = frozenset({"api.ingest"})


def _guard_request() -> None:
    """One request-level check: no NUL byte or lone surrogate in the path, query, headers, form or JSON body.

    Raises:
        InvalidInput: naming the part of the request (a 422 JSON error under /api, an error page elsewhere).
    """
    def check(value: str, where: str) -> None:
        problem = inputs.bad_char(value)
        if problem:
            raise InvalidInput(f"the {where} contains a {problem}", {"field": where})

    check(request.path, "path")
    for key, value in request.args.items(multi=True):
        check(key, "query"), check(value, "query")
    for _, value in request.headers.items():
        check(value, "headers")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, value in request.form.items(multi=True):
                check(key, "form"), check(value, "form")
        if request.is_json and request.endpoint not in PER_ITEM_ENDPOINTS and request.content_length != 0:
            data = request.get_json(silent=True)  # depth-checked by GuardedJSONProvider; cached for the view
            if data is not None:
                inputs.check_json(data, "body")


class IdConverter(IntegerConverter):
    """`<id:name>`: a positive integer that fits the database's 32-bit INTEGER (else 404, never an overflow)."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


def _install_hooks(app: Flask) -> None:
    metrics = app.extensions["newsdesk_metrics"]
    hsts = app.config["NEWSDESK_SETTINGS"].web.secure_cookies

    @app.before_request
    def _start() -> None:
        g.request_id = uuid.uuid4().hex[:16]
        g.started = time.perf_counter()
        _guard_request()

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-Id"] = getattr(g, "request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if hsts:  # behind TLS (web.secure_cookies): browsers keep to https for this host
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", CSP)
        if hasattr(g, "started"):
            endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
            method = request.method if request.method in HTTP_METHODS else "OTHER"  # no series per invented verb
            metrics.observe(endpoint, method, response.status_code, time.perf_counter() - g.started)
        return response


def fact_text(value: Any) -> str:
    """An alert fact as text: numbers rounded, lists joined, mappings as "key: value", never a Python repr."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else "n/a"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(fact_text(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {fact_text(v)}" for k, v in value.items()) or "none"
    return "—" if value is None else str(value)


def source_of(url: Any) -> str:
    """The publisher of an item as its http(s) link's host name ("www.reuters.com" -> "reuters.com"), or ''."""
    text = url if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")) else ""
    try:
        host = (urlsplit(text).hostname or "") if text else ""
    except ValueError:  # a malformed host ("http://[x") is no source
        return ""
    return host[4:] if host.startswith("www.") else host


def _register_template_helpers(app: Flask) -> None:
    from datetime import datetime

    from monitor.vocabulary import AlertState
    from newsdesk.db import utcnow

    @app.template_filter("ago")
    def _ago(value: Any) -> str:
        if not isinstance(value, datetime):
            return "" if value is None else str(value)
        seconds = (utcnow() - value.replace(tzinfo=None)).total_seconds()
        if seconds < 0:
            return value.strftime("%Y-%m-%d %H:%M UTC")
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{int(seconds // size)} {unit} ago"
        return "just now"

    @app.template_filter("when")
    def _when(value: Any) -> str:
        """Every time on a page is UTC (stored naive UTC) and says so; the live panel's script writes UTC too."""
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M UTC")
        return "" if value is None else str(value)

    @app.template_filter("urlencode_without")
    def _urlencode_without(args: Any, key: str) -> str:
        from urllib.parse import urlencode

        return urlencode([(k, v) for k, v in args.items(multi=True) if k != key])

    @app.template_filter("alert_state")
    def _alert_state(alert: AlertInfo) -> str:
        """firing alerts may be acknowledged or silenced: show the most telling state."""
        if alert.state == AlertState.FIRING and alert.silence_id:
            return AlertState.SILENCED
        if alert.state == AlertState.FIRING and alert.acknowledged_at:
            return AlertState.ACKNOWLEDGED
        return alert.state

    @app.template_filter("http_url")
    def _http_url(value: Any) -> str:
        """An http(s) URL as is, anything else (javascript:, data:, stored before imports checked) as ''."""
        text = value if isinstance(value, str) else ""
        return text if text[:8].lower().startswith(("http://", "https://")) else ""

    app.add_template_filter(source_of, "source_of")

    @app.template_filter("num")
    def _num(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return "" if value is None else str(value)

    app.template_filter("fact")(fact_text)
