"""/healthz (process up), /readyz (database, models, index), /metrics (Prometheus text) and the plotly bundle."""

from __future__ import annotations

import gzip
import logging
import threading
from pathlib import Path
from typing import Any

import plotly
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request, send_file

from finetune import service as finetune_service
from finetune.vocabulary import TASKS
from newsdesk import db
from newsdesk.errors import NewsdeskError
from recsys import service as recsys_service

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@bp.route("/healthz")
def healthz() -> Response:
    """The process is up and answering."""
    return jsonify({"status": "ok"})


def _check(name: str, fn: Any) -> dict[str, Any]:
    try:
        detail = fn()
        return {"name": name, "ok": True, "detail": detail}
    except NewsdeskError as exc:
        return {"name": name, "ok": False, "detail": exc.message}
    except Exception as exc:  # noqa: BLE001 - a readiness probe reports, it does not crash
        log.warning("readiness check %s failed: %s", name, exc)
        return {"name": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def _database() -> str:
    url = current_app.config["NEWSDESK_SETTINGS"].database_url
    with db.get_engine(url).connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    if not db.is_migrated(url):
        raise RuntimeError("database schema is not at the latest revision (run `newsdesk init`)")
    return "reachable and migrated"


def _models() -> str:
    with db.session_scope(current_app.config["NEWSDESK_SETTINGS"].database_url) as session:
        found = {task: finetune_service.current_version(session, task) for task in TASKS}
    if found["sentiment"] is None:
        raise RuntimeError("no current sentiment model (messages are stored unclassified)")
    return ", ".join(f"{t}={v.version if v else 'base encoder'}" for t, v in found.items())


def _inference() -> dict[str, str]:
    """Task -> the inference path chosen for its current version on this machine ('' until loaded once)."""
    settings = current_app.config["NEWSDESK_SETTINGS"]
    try:
        with db.session_scope(settings.database_url) as session:
            return {task: finetune_service.serving_path(session, settings, task) for task in TASKS}
    except (NewsdeskError, sa.exc.SQLAlchemyError) as exc:
        log.info("readiness: no inference paths (%s)", exc)
        return {}


def _index() -> str:
    settings = current_app.config["NEWSDESK_SETTINGS"]
    with db.session_scope(settings.database_url) as session:
        status = recsys_service.index_status(session, settings)
    if not status.vectors:
        raise RuntimeError("the item index is empty (run `newsdesk index build`)")
    stale = " (stale)" if status.stale else ""
    return f"{status.vectors} vectors, model {status.model_version or 'base'}{stale}"


@bp.route("/readyz")
def readyz() -> Response:
    """200 when the database, a sentiment model and the item index are ready; 503 with the failing checks."""
    checks = [_check("database", _database), _check("models", _models), _check("index", _index)]
    ok = all(c["ok"] for c in checks)
    response = jsonify({"status": "ready" if ok else "not ready", "checks": checks, "inference": _inference()})
    response.status_code = 200 if ok else 503
    return response


def _gauges() -> list[str]:
    """Messages processed, alerts by state and model versions, read from the database at scrape time."""
    settings = current_app.config["NEWSDESK_SETTINGS"]
    lines: list[str] = []
    engine = db.get_engine(settings.database_url)
    tables = set(sa.inspect(engine).get_table_names())
    with engine.connect() as conn:
        if "messages" in tables:  # read-only counts over monitor's tables (no service call exists for totals)
            n = conn.execute(sa.text("SELECT COUNT(*) FROM messages")).scalar() or 0
            lines += ["# HELP newsdesk_messages_processed Messages stored by the monitor.",
                      "# TYPE newsdesk_messages_processed gauge", f"newsdesk_messages_processed {n}"]
        if "alerts" in tables:
            lines += ["# HELP newsdesk_alerts Alerts by state.", "# TYPE newsdesk_alerts gauge"]
            for state, n in conn.execute(sa.text("SELECT state, COUNT(*) FROM alerts GROUP BY state")):
                lines.append(f'newsdesk_alerts{{state="{state}"}} {n}')
    try:
        with db.session_scope(settings.database_url) as session:
            versions = finetune_service.list_versions(session)
        lines += ["# HELP newsdesk_model_versions Registered model versions (current=1 for the served one).",
                  "# TYPE newsdesk_model_versions gauge"]
        for v in versions:
            lines.append(f'newsdesk_model_versions{{task="{v.task}",version="{v.version}",status="{v.status}"}} '
                         f'{1 if v.is_current else 0}')
    except NewsdeskError as exc:
        log.info("metrics: no model versions (%s)", exc.message)
    return lines


@bp.route("/metrics")
def metrics() -> Response:
    """Prometheus text exposition format 0.0.4."""
    lines = current_app.extensions["newsdesk_metrics"].render()
    try:
        lines += _gauges()
    except Exception as exc:  # noqa: BLE001 - metrics stay up when the database is not
        log.warning("metrics gauges unavailable: %s", exc)
        lines += ["# newsdesk gauges unavailable"]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


_GZIPPED: dict[str, bytes] = {}
_GZIP_LOCK = threading.Lock()


def _plotly_gzip() -> bytes:
    """plotly.min.js gzipped once per process (4.8 MB -> about 1.4 MB on the wire)."""
    with _GZIP_LOCK:
        if "plotly" not in _GZIPPED:
            _GZIPPED["plotly"] = gzip.compress(PLOTLY_JS.read_bytes(), compresslevel=9, mtime=0)
        return _GZIPPED["plotly"]


@bp.route("/vendor/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js as bundled in the `plotly` Python package (served locally: the app works offline); gzipped when
    the client accepts it, cached for a day, with an ETag either way."""
    if "gzip" not in request.accept_encodings:
        response = send_file(PLOTLY_JS, mimetype="application/javascript", max_age=86400)
        response.vary.add("Accept-Encoding")
        return response
    body = _plotly_gzip()
    response = Response(body, mimetype="application/javascript")
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    response.cache_control.public, response.cache_control.max_age = True, 86400
    response.set_etag(f"plotly-{plotly.__version__}-gz")
    return response.make_conditional(request)
