"""/api/v1/models: versions per task, promote, rollback, retrain (admins)."""

from __future__ import annotations

from flask import g, request
from flask.wrappers import Response

from finetune import service as finetune_service
from finetune.vocabulary import TASKS
from newsdesk.errors import InvalidInput, NotFound
from web.api import bp, int_arg, json_body, ok, settings
from web.auth import db_session, token_required


def check_task(task: str | None) -> str | None:
    """Raises NotFound for a task that does not exist."""
    if task is not None and task not in TASKS:
        raise NotFound(f"unknown task {task!r}; tasks are {', '.join(TASKS)}", {"task": task})
    return task


@bp.get("/models")
@token_required("admin")
def list_models() -> Response:
    task = check_task(request.args.get("task") or None)
    with db_session() as session:
        return ok({"items": finetune_service.list_versions(session, task)})


@bp.get("/models/runs")
@token_required("admin")
def list_runs() -> Response:
    task = check_task(request.args.get("task") or None)
    limit = int_arg("limit", 50, 1, 500)
    with db_session() as session:
        return ok({"items": finetune_service.list_training_runs(session, task, limit=limit)})


@bp.post("/models/<task>/promote")
@token_required("admin")
def promote(task: str) -> Response:
    check_task(task)
    version = json_body(dict).get("version")
    if not isinstance(version, str) or not version or len(version) > 128:
        raise InvalidInput("version must be a non-empty string", {"field": "version"})
    with db_session() as session:
        return ok(finetune_service.promote(session, settings(), task, version, actor=g.api_user.username))


@bp.post("/models/<task>/rollback")
@token_required("admin")
def rollback(task: str) -> Response:
    check_task(task)
    with db_session() as session:
        return ok(finetune_service.rollback(session, settings(), task, actor=g.api_user.username))


@bp.post("/models/<task>/retrain")
@token_required("admin")
def retrain(task: str) -> Response:
    check_task(task)
    with db_session() as session:
        run_id = finetune_service.request_retrain(session, task, g.api_user.username)
        runs = finetune_service.list_training_runs(session, task, limit=5)
    status = next((r.status for r in runs if getattr(r, "id", None) == run_id), "queued")
    return ok({"run_id": run_id, "task": task, "status": status}, 202)  # an already queued/running run is reused
