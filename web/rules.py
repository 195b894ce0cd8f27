"""The alert rule editor (analysts): list, create, edit parameters/tickers/severity, enable/disable, delete."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from monitor import service as monitor_service
from monitor.vocabulary import RULE_KINDS, SEVERITIES, normalise_ticker
from newsdesk import inputs
from newsdesk.errors import InvalidInput
from web.auth import db_session, role_required
from web.forms import ActionForm, flashed_errors, require_valid_form

bp = Blueprint("rules", __name__, url_prefix="/dashboard/rules")


def _fields() -> dict[str, Any]:
    """The form's rule fields, parsed.

    Raises:
        InvalidInput: parameters that are not a JSON object, a repeat that is not a number.
    """
    raw = request.form.get("params", "").strip() or "{}"
    try:
        params = inputs.loads(raw, "parameters", max_depth=8)
    except InvalidInput:
        raise InvalidInput("parameters must be a JSON object, e.g. {\"min_negative\": 5}", {"field": "params"}) \
            from None
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object", {"field": "params"})
    repeat = request.form.get("repeat_minutes", "240").strip()
    if not inputs.is_ascii_int(repeat) or not 0 <= int(repeat) <= 525_600:
        raise InvalidInput("repeat must be a whole number of minutes (at most a year)", {"field": "repeat_minutes"})
    tickers = [normalise_ticker(t) for t in request.form.get("tickers", "").replace(",", " ").split()]
    return {"name": request.form.get("name", "").strip(), "params": params, "tickers": [t for t in tickers if t],
            "severity": request.form.get("severity", "warning"), "repeat_interval_s": int(repeat) * 60,
            "enabled": request.form.get("enabled") == "on"}


@bp.route("/")
@role_required("analyst")
def index() -> Any:
    with db_session() as session:
        rules = monitor_service.list_rules(session)
    return render_template("rules.html", rules=rules, kinds=RULE_KINDS, severities=SEVERITIES, form=ActionForm(),
                           params_json={r.id: json.dumps(r.params, indent=None) for r in rules})


def _run(action: Any, done: str) -> Any:
    require_valid_form()
    with flashed_errors():
        with db_session() as session:
            action(session)
        flash(done, "info")
    return redirect(url_for("rules.index"))


@bp.route("/", methods=["POST"])
@role_required("analyst")
def create() -> Any:
    def action(session: Any) -> None:
        f = _fields()
        monitor_service.create_rule(session, f.pop("name"), request.form.get("kind", ""), f.pop("params"), **f)

    return _run(action, "Rule created.")


@bp.route("/<id:rule_id>", methods=["POST"])
@role_required("analyst")
def update(rule_id: int) -> Any:
    return _run(lambda session: monitor_service.update_rule(session, rule_id, **_fields()), f"Rule #{rule_id} saved.")


@bp.route("/<id:rule_id>/delete", methods=["POST"])
@role_required("analyst")
def delete(rule_id: int) -> Any:
    return _run(lambda session: monitor_service.delete_rule(session, rule_id), f"Rule #{rule_id} deleted.")
