"""The admin console: model versions per task side by side, promote/rollback, training runs, retrain, jobs, users."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from finetune import service as finetune_service
from finetune.vocabulary import TASKS
from newsdesk import jobruns, locks
from newsdesk.db import get_engine, utcnow
from newsdesk.errors import InvalidInput, Unavailable
from newsdesk.inputs import strict_int
from web.auth import db_session, role_required
from web.extensions import runtime
from web.forms import ActionForm, flashed_errors, require_valid_form
from web.users import (
    create_token,
    create_user,
    list_tokens,
    list_users,
    revoke_token,
    set_active,
    set_password,
    set_role,
)
from web.vocabulary import ROLES, TOKEN_KINDS

log = logging.getLogger(__name__)
bp = Blueprint("console", __name__, url_prefix="/console")


def scheduler_jobs() -> list[dict[str, Any]]:
    """Jobs with their next run time: the in-process worker's scheduler, else the `apscheduler_jobs` table."""
    worker = runtime().worker
    if worker is not None and worker.scheduler.running:
        return [{"id": j.id, "name": j.name, "trigger": str(j.trigger),
                 "next_run": j.next_run_time.astimezone(timezone.utc).replace(tzinfo=None) if j.next_run_time
                 else None} for j in worker.scheduler.get_jobs()]
    engine = get_engine(current_app.config["NEWSDESK_SETTINGS"].database_url)
    if "apscheduler_jobs" not in sa.inspect(engine).get_table_names():
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, next_run_time FROM apscheduler_jobs ORDER BY next_run_time")).all()
    return [{"id": r[0], "name": r[0], "trigger": "",
             "next_run": datetime.fromtimestamp(r[1], timezone.utc).replace(tzinfo=None) if r[1] else None}
            for r in rows]


def scheduler_history(limit: int = 20) -> dict[str, Any]:
    """The worker running the schedule (the scheduler lock's holder) and the latest recorded job executions."""
    settings = current_app.config["NEWSDESK_SETTINGS"]
    leader = locks.holder(settings.database_url, jobruns.SCHEDULER_LOCK, fallback_dir=settings.home / "locks")
    with db_session() as session:
        runs = jobruns.history(session, limit=limit)
    return {"leader": leader.owner if leader else None, "runs": runs}


@bp.app_template_filter("duration")
def duration(seconds: Any) -> str:
    """Seconds as "2 min 13 s" / "1 h 04 min" / "45 s" ('' for None)."""
    if seconds is None:
        return ""
    total = int(round(float(seconds)))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def gate_view(version: Any, run_reasons: dict[str, str]) -> dict[str, Any] | None:
    """The gate decision of a version with its figures: candidate and champion values on the same evaluation data,
    the margin it had to beat and the reason (stored in metrics["gate"] by finetune; older versions: rebuilt from
    metrics["champion"] and their run's reason)."""
    metrics = version.metrics or {}
    gate = metrics.get("gate")
    if isinstance(gate, dict):
        return {"metric": gate.get("metric") or version.primary_metric, "candidate": gate.get("candidate"),
                "champion": gate.get("champion"), "margin": gate.get("margin"), "reason": gate.get("reason", ""),
                "promote": bool(gate.get("promote")), "mode": gate.get("mode", "")}
    reason = run_reasons.get(version.version, "")
    champion = metrics.get("champion") if isinstance(metrics.get("champion"), dict) else {}
    if not reason and not champion:
        return None
    metric = version.primary_metric
    return {"metric": metric, "candidate": metrics.get(metric), "champion": champion.get(metric), "margin": None,
            "reason": reason, "promote": reason.startswith("promoted"), "mode": ""}


def _metric_columns(versions: list[Any]) -> list[str]:
    keys: list[str] = []
    for v in versions:
        for key, value in (v.metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in keys:
                keys.append(key)
    primary = [v.primary_metric for v in versions if v.primary_metric]
    ordered = [k for k in dict.fromkeys(primary) if k in keys] + [k for k in keys if k not in primary]
    return ordered[:8]


@bp.route("/")
@role_required("admin")
def index() -> Any:
    """Versions per task with metrics side by side, the training history and the scheduler's jobs."""
    tasks: list[dict[str, Any]] = []
    runs: list[Any] = []
    problem = None
    try:
        with db_session() as session:
            runs = finetune_service.list_training_runs(session, None, limit=30)
            run_reasons = {r.version: r.reason for r in runs if r.version}
            for task in TASKS:
                versions = finetune_service.list_versions(session, task)
                columns = _metric_columns(versions)
                chart = {"metric": columns[0] if columns else "",
                         "versions": [v.version for v in versions][::-1],
                         "values": [(v.metrics or {}).get(columns[0]) if columns else None for v in versions][::-1],
                         "current": [bool(v.is_current) for v in versions][::-1]}
                tasks.append({"task": task, "versions": versions, "columns": columns, "chart": chart,
                              "gates": {v.version: gate_view(v, run_reasons) for v in versions},
                              "current": next((v for v in versions if v.is_current), None)})
    except Unavailable as exc:
        problem = exc.message
    try:
        jobs = scheduler_jobs()
    except Exception as exc:  # noqa: BLE001 - jobs are informative; the console stays up without them
        log.warning("cannot read scheduler jobs: %s", exc)
        jobs = []
    try:
        schedule = scheduler_history()
    except Unavailable as exc:
        log.warning("cannot read the job history: %s", exc.message)
        schedule = {"leader": None, "runs": []}
    return render_template("console.html", tasks=tasks, runs=runs, jobs=jobs, schedule=schedule, problem=problem,
                           form=ActionForm(), now=utcnow()), \
        503 if problem else 200


def _task(task: str) -> str:
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}", {"field": "task"})
    return task


@bp.route("/models/<task>/promote", methods=["POST"])
@role_required("admin")
def promote(task: str) -> Any:
    require_valid_form()
    version = request.form.get("version", "")[:128]
    settings = current_app.config["NEWSDESK_SETTINGS"]
    with flashed_errors():
        with db_session() as session:
            info = finetune_service.promote(session, settings, _task(task), version, actor=current_user.username)
        flash(f"{task} {info.version} is now current.", "info")
    return redirect(url_for("console.index"))


@bp.route("/models/<task>/rollback", methods=["POST"])
@role_required("admin")
def rollback(task: str) -> Any:
    require_valid_form()
    settings = current_app.config["NEWSDESK_SETTINGS"]
    with flashed_errors():
        with db_session() as session:
            info = finetune_service.rollback(session, settings, _task(task), actor=current_user.username)
        flash(f"Rolled {task} back to {info.version}.", "info")
    return redirect(url_for("console.index"))


@bp.route("/models/<task>/retrain", methods=["POST"])
@role_required("admin")
def retrain(task: str) -> Any:
    require_valid_form()
    with db_session() as session:
        run_id = finetune_service.request_retrain(session, _task(task), current_user.username)
    flash(f"Queued {task} training run #{run_id}; the worker picks it up (requests while a run of the task is "
          "queued or running join that run).", "info")
    return redirect(url_for("console.index"))


@bp.route("/users", methods=["GET", "POST"])
@role_required("admin")
def users() -> Any:
    """List users and tokens; create a user or a token (a new token is shown once)."""
    new_token = None
    if request.method == "POST":
        require_valid_form()
        action = request.form.get("action")
        with flashed_errors(), db_session() as session:
            if action == "create":
                create_user(session, request.form.get("username", "").strip(), request.form.get("password", ""),
                            request.form.get("role", "reader"))
                flash(f"Created {request.form.get('username')}.", "info")
            elif action == "token":
                kind = request.form.get("kind", "user")
                days = request.form.get("expires_days", "").strip()
                expires = timedelta(days=strict_int(days, "expires_days", 1, 3650)) if days else None
                new_token = create_token(session, request.form.get("username", ""), kind, expires)
            elif action == "revoke":
                token_id = strict_int(request.form.get("token_id", ""), "token_id", 1, 2**31 - 1)
                revoke_token(session, token_id)
                flash(f"Revoked token {token_id}.", "info")
            elif action in ("deactivate", "activate"):
                name = request.form.get("username", "")
                if action == "deactivate" and name == current_user.username:
                    raise InvalidInput("you cannot deactivate yourself", {"field": "username"})
                set_active(session, name, action == "activate")
                flash(f"{name} {action}d; their sessions ended.", "info")
            elif action == "role":
                name = request.form.get("username", "")
                set_role(session, name, request.form.get("role", ""))
                flash(f"{name} is now {request.form.get('role')}; their sessions ended.", "info")
            elif action == "password":
                name = request.form.get("username", "")
                set_password(session, name, request.form.get("password", ""))
                flash(f"Password of {name} changed; their sessions ended.", "info")
            else:
                raise InvalidInput("unknown action", {"field": "action"})
    with db_session() as session:
        rows = [(u.username, u.role, u.active, u.created_at) for u in list_users(session)]
        tokens = list_tokens(session)
    return render_template("users.html", users=rows, tokens=tokens, roles=ROLES, kinds=TOKEN_KINDS,
                           new_token=new_token, form=ActionForm())
