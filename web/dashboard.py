"""The analyst dashboard: alerts (filters, detail, acknowledge, silence), sentiment chart, stream, dead letters."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from monitor import service as monitor_service
from monitor.vocabulary import ALERT_STATES, TICKER_MAX, normalise_ticker
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput, NewsdeskError, Unavailable
from newsdesk.inputs import is_ascii_int
from web.api.alerts import silence_matchers
from web.auth import db_session, role_required, safe_next
from web.extensions import runtime
from web.forms import ActionForm, flashed_errors, require_valid_form

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

PAGE_SIZE = 25
MAX_COMPARED = 6  # tickers on one chart side by side
WINDOWS = {"6": 6, "24": 24, "72": 72, "168": 168, "720": 720}  # hours offered in the filters


def _topic_arg() -> str | None:
    """The `topic` query argument (a label the model gave, as shown in the filter), or None."""
    return " ".join((request.args.get("topic") or "").split())[:64] or None


def _filters() -> dict[str, Any]:
    state = request.args.get("state") or None
    ticker = normalise_ticker(request.args.get("ticker"))[:TICKER_MAX] or None
    rule = request.args.get("rule_id") or ""
    hours = request.args.get("hours") or ""
    return {"state": state if state in ALERT_STATES else None, "ticker": ticker, "topic": _topic_arg(),
            "rule_id": int(rule) if is_ascii_int(rule) and 0 < int(rule) < 2**31 else None,
            "since": utcnow() - timedelta(hours=WINDOWS[hours]) if hours in WINDOWS else None}


@bp.route("/")
@role_required("analyst")
def index() -> Any:
    """Alerts with filters and pages, the per-ticker and per-topic sentiment charts, the latest messages."""
    return _index()


def _index(silence_draft: dict[str, str] | None = None) -> Any:
    """The dashboard; `silence_draft` refills the new-silence form after an error (422)."""
    filters = _filters()
    page_no = request.args.get("page", "1")
    page_no = int(page_no) if is_ascii_int(page_no) and 0 < int(page_no) < 100_000 else 1
    context: dict[str, Any] = {"alerts": [], "total": 0, "messages": [], "rules": [], "silences": [],
                               "topics": [], "groups": {}, "problem": None}
    try:
        with db_session() as session:
            alerts, total = monitor_service.list_alerts(session, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE,
                                                        **filters)
            context.update(alerts=alerts, total=total, rules=monitor_service.list_rules(session),
                           messages=monitor_service.latest_messages(session, limit=20, topic=filters["topic"]),
                           silences=monitor_service.list_silences(session, active_only=True),
                           topics=monitor_service.list_topics(session),
                           groups=monitor_service.list_alert_groups(session))
    except Unavailable as exc:
        context["problem"] = exc.message
    tickers = sorted({a.ticker for a in context["alerts"] if a.ticker} |
                     {t for m in context["messages"] for t in m.tickers})
    rule_names = {r.id: r.name for r in context["rules"]}  # silences show "rule “name”", not "rule_id=3"
    status = 503 if context["problem"] else 422 if silence_draft is not None else 200
    return render_template("dashboard.html", filters=filters, args=request.args, page=page_no, page_size=PAGE_SIZE,
                           rule_names=rule_names, silence_draft=silence_draft or {},
                           states=ALERT_STATES, windows=WINDOWS, tickers=tickers, form=ActionForm(),
                           chart_ticker=filters["ticker"] or (tickers[0] if tickers else ""),
                           **context), status


@bp.route("/series.json")
@role_required("analyst")
def series() -> Any:
    """Sentiment counts per time bucket for one ticker (or all), or with `by=topic` per topic, for the charts."""
    ticker = normalise_ticker(request.args.get("ticker"))[:TICKER_MAX] or None
    # several tickers side by side: `tickers=AAPL,MSFT` (at most MAX_COMPARED), one series each
    compared = list(dict.fromkeys(t for t in (normalise_ticker(v)[:TICKER_MAX] for v in
                                              (request.args.get("tickers") or "").split(",")) if t))[:MAX_COMPARED]
    by_topic = request.args.get("by") == "topic"
    topic = _topic_arg()
    hours = request.args.get("hours", "168")
    hours_n = WINDOWS.get(hours, 168)
    bucket = "hour" if hours_n <= 72 else "day"
    until = utcnow()
    since = until - timedelta(hours=hours_n)
    with db_session() as session:
        if by_topic:
            rows = monitor_service.topic_series(session, topic=topic, since=since, bucket=bucket)
        elif compared:
            rows = [row for t in compared
                    for row in monitor_service.sentiment_series(session, ticker=t, since=since, bucket=bucket)]
        else:
            rows = monitor_service.sentiment_series(session, ticker=ticker, since=since, bucket=bucket)
    out = []
    for row in rows:
        row = dict(row)
        stamp = row.get("bucket")
        row["bucket"] = stamp.isoformat() if hasattr(stamp, "isoformat") else str(stamp)
        out.append(row)
    return jsonify({"ticker": ticker, "tickers": compared if not by_topic else [],
                    "topic": topic if by_topic else None, "by": "topic" if by_topic else "ticker",
                    "bucket": bucket, "bucket_s": 3600 if bucket == "hour" else 86400,
                    "since": since.isoformat(), "until": until.isoformat(), "rows": out})


@bp.route("/alerts/<id:alert_id>")
@role_required("analyst")
def alert(alert_id: int) -> Any:
    """One alert: its values, evidence messages with scores, acknowledge and silence forms."""
    with db_session() as session:
        detail = monitor_service.get_alert(session, alert_id)
    return render_template("alert.html", alert=detail, form=ActionForm())


@bp.route("/alerts/<id:alert_id>/ack", methods=["POST"])
@role_required("analyst")
def acknowledge(alert_id: int) -> Any:
    require_valid_form()
    note = request.form.get("note", "").strip()[:2000]
    with flashed_errors(reraise_status=(404,)):
        with db_session() as session:
            monitor_service.acknowledge_alert(session, alert_id, current_user.username, note=note)
        flash(f"Alert #{alert_id} acknowledged.", "info")
    back = safe_next(request.form.get("back"))
    return redirect(back if back and back.startswith("/dashboard") else url_for("dashboard.alert", alert_id=alert_id))


@bp.route("/alerts/<id:alert_id>/silence", methods=["POST"])
@role_required("analyst")
def silence(alert_id: int) -> Any:
    require_valid_form()
    hours = request.form.get("hours", "")
    try:
        hours_f = float(hours)
    except ValueError:
        hours_f = 0.0
    if not 0 < hours_f <= 720:
        flash("Silence for 0-720 hours.", "error")
        return redirect(url_for("dashboard.alert", alert_id=alert_id))
    comment = request.form.get("comment", "").strip()[:2000]
    with db_session() as session:
        detail = monitor_service.get_alert(session, alert_id)
        matchers = silence_matchers(detail)
        monitor_service.create_silence(session, matchers, utcnow() + timedelta(hours=hours_f), current_user.username,
                                       comment=comment)
        what = monitor_service.describe_matchers(session, matchers)
    flash(f"Silenced {what} for {hours_f:g} h.", "info")
    return redirect(url_for("dashboard.alert", alert_id=alert_id))


DEAD_LETTER_VIEWS = ("open", "all", "replayed", "dismissed")


@bp.route("/silences", methods=["POST"])
@role_required("analyst")
def new_silence() -> Any:
    """A silence from the form: any of ticker, rule (picked by name) and topic, for 0-720 hours."""
    require_valid_form()
    form = {k: (request.form.get(k) or "").strip()[:2000] for k in ("ticker", "rule_id", "topic", "hours", "comment")}
    try:
        matchers = _silence_matchers(form)
        with db_session() as session:
            known = {r.id for r in monitor_service.list_rules(session)}
            if "rule_id" in matchers and matchers["rule_id"] not in known:
                raise InvalidInput("that rule no longer exists", {"field": "rule_id"})
            silence = monitor_service.create_silence(session, matchers, utcnow() + timedelta(hours=_hours(form)),
                                                     current_user.username, comment=form["comment"])
            what = monitor_service.describe_matchers(session, silence.matchers)
    except InvalidInput as exc:
        flash(exc.message, "error")
        return _index(form)
    flash(f"Silenced {what} until {silence.ends_at:%Y-%m-%d %H:%M} UTC.", "info")
    return redirect(url_for("dashboard.index") + "#silences")


def _silence_matchers(form: dict[str, str]) -> dict[str, Any]:
    """Raises InvalidInput: a bad ticker or rule, or no matcher at all."""
    matchers: dict[str, Any] = {}
    if form["ticker"]:
        ticker = normalise_ticker(form["ticker"])
        if not ticker or len(ticker) > TICKER_MAX or not ticker.replace(".", "").replace("-", "").isalnum():
            raise InvalidInput(f"{form['ticker']!r} is not a ticker", {"field": "ticker"})
        matchers["ticker"] = ticker
    if form["rule_id"]:
        if not is_ascii_int(form["rule_id"]) or not 0 < int(form["rule_id"]) < 2**31:
            raise InvalidInput("pick a rule from the list", {"field": "rule_id"})
        matchers["rule_id"] = int(form["rule_id"])
    if form["topic"]:
        matchers["topic"] = " ".join(form["topic"].split())[:64]
    if not matchers:
        raise InvalidInput("say what to silence: a ticker, a rule or a topic (or several)", {"field": "ticker"})
    return matchers


def _hours(form: dict[str, str]) -> float:
    try:
        hours = float(form["hours"] or "2")
    except ValueError:
        hours = 0.0
    if not 0 < hours <= 720:
        raise InvalidInput("silence for more than 0 and at most 720 hours", {"field": "hours"})
    return hours


@bp.route("/dead-letters")
@role_required("analyst")
def dead_letters() -> Any:
    return _dead_letters_page()


def _dead_letters_page(draft: dict[str, Any] | None = None) -> str:
    """Dead letters (open ones by default) and undelivered notifications; `draft` refills one edit form."""
    page_no = request.args.get("page", "1")
    page_no = int(page_no) if is_ascii_int(page_no) and 0 < int(page_no) < 100_000 else 1
    view = request.args.get("status") if request.args.get("status") in DEAD_LETTER_VIEWS else "open"
    with db_session() as session:
        rows, total = monitor_service.list_dead_letters(session, PAGE_SIZE, (page_no - 1) * PAGE_SIZE,
                                                        status=None if view == "all" else view)
        notes, notes_total = monitor_service.undelivered_notifications(session, PAGE_SIZE)
    return render_template("dead_letters.html", rows=rows, total=total, page=page_no, page_size=PAGE_SIZE,
                           view=view, views=DEAD_LETTER_VIEWS, draft=draft,
                           notes=notes, notes_total=notes_total, form=ActionForm())


@bp.route("/dead-letters/replay-all", methods=["POST"])
@role_required("analyst")
def replay_all() -> Any:
    """Replay every open dead letter (e.g. after an outage or a fix); those still invalid stay open."""
    require_valid_form()
    classifier = runtime().classifier()
    reason = (request.form.get("reason") or "").strip()[:200] or None
    with flashed_errors("Replay failed: "):
        with db_session() as session:
            out = monitor_service.replay_dead_letters(session, classifier, reason=reason,
                                                      actor=current_user.username)
        flash(f"Replayed {out['replayed']} dead letters ({out['still_invalid']} still invalid).", "info")
    return redirect(url_for("dashboard.dead_letters"))


@bp.route("/notifications/retry", methods=["POST"])
@role_required("analyst")
def retry_notifications() -> Any:
    """Send undelivered webhook notifications again now (one with `id`, else all)."""
    require_valid_form()
    raw = request.form.get("id") or ""
    ids = [int(raw)] if raw.isdigit() and len(raw) < 10 else None
    with db_session() as session:
        n = monitor_service.retry_notifications(session, ids, actor=current_user.username)
    flash(f"{n} notification{'s' if n != 1 else ''} queued for another try.", "info")
    return redirect(url_for("dashboard.dead_letters"))


@bp.route("/dead-letters/<id:dead_letter_id>/replay", methods=["POST"])
@role_required("analyst")
def replay(dead_letter_id: int) -> Any:
    """Replay one dead letter, as received or with the payload edited in the form (kept on an error, 422)."""
    require_valid_form()
    classifier = runtime().classifier()
    payload = request.form.get("payload")
    payload = payload.replace("\r\n", "\n") if payload is not None else None
    try:
        with db_session() as session:
            info = monitor_service.replay_dead_letter(session, classifier, dead_letter_id, payload=payload,
                                                      actor=current_user.username)
    except NewsdeskError as exc:
        if exc.http_status >= 500 or exc.http_status == 404:
            raise
        flash(f"Replay of #{dead_letter_id} failed: {exc.message}", "error")
        return _dead_letters_page({"for": dead_letter_id, "payload": payload}), 422
    flash(f"Dead letter #{dead_letter_id} replayed as message {info.message_id}.", "info")
    return redirect(url_for("dashboard.dead_letters"))


@bp.route("/dead-letters/<id:dead_letter_id>/dismiss", methods=["POST"])
@role_required("analyst")
def dismiss(dead_letter_id: int) -> Any:
    """Close a dead letter without replaying it."""
    require_valid_form()
    with flashed_errors(f"Dismissing #{dead_letter_id} failed: ", reraise_status=(404,)):
        with db_session() as session:
            monitor_service.dismiss_dead_letter(session, dead_letter_id, current_user.username,
                                                note=request.form.get("note", "")[:500])
        flash(f"Dead letter #{dead_letter_id} dismissed.", "info")
    return redirect(url_for("dashboard.dead_letters"))


@bp.route("/silences/<id:silence_id>/expire", methods=["POST"])
@role_required("analyst")
def expire_silence(silence_id: int) -> Any:
    """End a silence now."""
    require_valid_form()
    with db_session() as session:
        monitor_service.expire_silence(session, silence_id, current_user.username)
    flash(f"Silence #{silence_id} ended.", "info")
    return redirect(url_for("dashboard.index"))
