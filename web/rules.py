"""The alert rule editor (analysts): list, create, edit parameters/tickers/topics/severity, enable/disable, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from monitor import service as monitor_service
from monitor.vocabulary import RULE_KINDS, SEVERITIES, normalise_ticker
from newsdesk import inputs
from newsdesk.errors import InvalidInput, NewsdeskError, NotFound
from web.auth import db_session, role_required
from web.forms import ActionForm, flashed_errors, require_valid_form

bp = Blueprint("rules", __name__, url_prefix="/dashboard/rules")


PARAM_PREFIX = "p."  # a parameter's form field is "p.<key>", one field per parameter of the rule's kind


def _fields(kind: str) -> dict[str, Any]:
    """The form's rule fields, parsed; the parameters from the fields of `kind`.

    Raises:
        InvalidInput: a parameter that is not a number, a repeat that is not a number.
    """
    params = monitor_service.parse_rule_params(kind, {k[len(PARAM_PREFIX):]: v for k, v in request.form.items()
                                                      if k.startswith(PARAM_PREFIX)})
    repeat = request.form.get("repeat_minutes", "240").strip()
    if not inputs.is_ascii_int(repeat) or not 0 <= int(repeat) <= 525_600:
        raise InvalidInput("repeat must be a whole number of minutes (at most a year)", {"field": "repeat_minutes"})
    tickers = [normalise_ticker(t) for t in request.form.get("tickers", "").replace(",", " ").split()]
    # topics: the known ones picked in the list, plus new ones typed (";"-separated: labels may contain "|" or ",")
    topics = request.form.getlist("topics") + request.form.get("topics_extra", "").split(";")
    return {"name": request.form.get("name", "").strip(), "params": params, "tickers": [t for t in tickers if t],
            "topics": [t for t in topics if t.strip()],
            "severity": request.form.get("severity", "warning"), "repeat_interval_s": int(repeat) * 60,
            "enabled": request.form.get("enabled") == "on"}


@bp.route("/")
@role_required("analyst")
def index() -> Any:
    return _page()


def _page(draft: dict[str, Any] | None = None) -> str:
    """The editor; `draft` (what was typed into one form, "for": a rule id or "new") refills that form."""
    with db_session() as session:
        rules = monitor_service.list_rules(session)
        topics = monitor_service.list_topics(session)
    return render_template("rules.html", rules=rules, kinds=RULE_KINDS, severities=SEVERITIES, form=ActionForm(),
                           topics=topics, draft=draft, prefix=PARAM_PREFIX,
                           param_fields={k: monitor_service.rule_param_fields(k) for k in RULE_KINDS})


def _save(action: Any, done: str, draft_for: int | str) -> Any:
    """Run a create/update; on a user error show the editor again with the message and what was typed (422)."""
    require_valid_form()
    try:
        with db_session() as session:
            action(session)
    except NewsdeskError as exc:
        if exc.http_status >= 500:
            raise
        flash(exc.message, "error")
        draft = {**request.form.to_dict(flat=True), "topics": request.form.getlist("topics"), "for": draft_for}
        return _page(draft), 422
    flash(done, "info")
    return redirect(url_for("rules.index"))


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
        kind = request.form.get("kind", "")
        if kind not in RULE_KINDS:
            raise InvalidInput(f"pick a kind: {', '.join(RULE_KINDS)}", {"field": "kind"})
        f = _fields(kind)
        monitor_service.create_rule(session, f.pop("name"), kind, f.pop("params"), **f)

    return _save(action, "Rule created.", "new")


@bp.route("/<id:rule_id>", methods=["POST"])
@role_required("analyst")
def update(rule_id: int) -> Any:
    def action(session: Any) -> None:
        rule = next((r for r in monitor_service.list_rules(session) if r.id == rule_id), None)
        if rule is None:
            raise NotFound(f"rule {rule_id} not found")
        monitor_service.update_rule(session, rule_id, **_fields(rule.kind))

    return _save(action, f"Rule #{rule_id} saved.", rule_id)


@bp.route("/<id:rule_id>/delete", methods=["POST"])
@role_required("analyst")
def delete(rule_id: int) -> Any:
    return _run(lambda session: monitor_service.delete_rule(session, rule_id), f"Rule #{rule_id} deleted.")
