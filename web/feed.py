"""The reader's feed: ranked items with reasons, impressions/clicks/not-interested, onboarding for new users."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from monitor.vocabulary import normalise_ticker
from newsdesk.errors import InvalidInput, Unavailable
from newsdesk.interactions import FEEDBACK_KINDS
from recsys import service as recsys_service
from web.auth import db_session
from web.users import require_user, set_topics

log = logging.getLogger(__name__)
bp = Blueprint("feed", __name__, url_prefix="/feed")

FEED_SIZE = 20


class OnboardingForm(FlaskForm):
    """Topics come as checkboxes; tickers from a searchable list of every ticker in the catalog (checkboxes named
    "ticker", filtered as you type) or as free text ("tickers"); only the CSRF token is declared here."""


def _needs_onboarding(session: Any, username: str, topics: list[str] | None) -> bool:
    """A user who never chose topics and has no history yet gets the onboarding page first."""
    if topics is not None:
        return False
    try:
        return not recsys_service.user_history(session, username, limit=1)
    except Unavailable:
        return True


@bp.route("/")
@login_required
def index() -> Any:
    """The ranked feed; showing it logs one impression per item."""
    settings = current_app.config["NEWSDESK_SETTINGS"]
    recs: list[Any] = []
    problem = None
    with db_session() as session:
        user = require_user(session, current_user.username)
        topics = list(user.topics) if user.topics is not None else None
        if _needs_onboarding(session, user.username, topics):
            return redirect(url_for("feed.onboarding"))
        try:
            recs = recsys_service.recommend_for_user(session, settings, user.username, k=FEED_SIZE,
                                                     topics=tuple(topics or ()))
            if recs:
                recsys_service.log_events(session, user.username, [(r.item_id, "impression") for r in recs])
        except Unavailable as exc:
            problem = exc.message
    return render_template("feed.html", recs=recs, topics=topics or [], problem=problem), 503 if problem else 200


@bp.route("/onboarding", methods=["GET", "POST"])
@login_required
def onboarding() -> Any:
    """Pick topics and tickers (two separate choices): they shape the first feed and keep a share of it until the
    reader's behaviour takes over (recsys.recommender.with_interests)."""
    form = OnboardingForm()
    with db_session() as session:
        user = require_user(session, current_user.username)
        if form.validate_on_submit():
            chosen = request.form.getlist("topic")
            picked = request.form.getlist("ticker") + request.form.get("tickers", "").replace(",", " ").split()
            tickers = [normalise_ticker(t) for t in picked]
            try:
                saved = set_topics(session, user, chosen + [f"${t}" for t in dict.fromkeys(tickers) if t])
            except InvalidInput as exc:
                flash(exc.message, "error")
                return redirect(url_for("feed.onboarding"))
            flash(f"Saved {len(saved)} interests." if saved else "No interests chosen: showing what is popular.",
                  "info")
            return redirect(url_for("feed.index"))
        try:
            interests = recsys_service.list_interests(session)
        except Unavailable as exc:
            topics, tickers, problem = [], [], exc.message
        else:
            topics, tickers, problem = interests.topics, interests.tickers, None
        current = list(user.topics or [])
    current_tickers = [t[1:] for t in current if t.startswith("$")]
    return render_template("onboarding.html", form=form, topics=topics, tickers=tickers, current=current,
                           current_tickers=current_tickers, problem=problem)


@bp.route("/events", methods=["POST"])
@login_required
def events() -> Any:
    """Log a click or "not interested" for the logged-in reader (JSON, CSRF token in X-CSRFToken)."""
    data = request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    item_id, kind = data.get("item_id"), data.get("kind")
    if not isinstance(item_id, str) or not item_id or len(item_id) > 128 or kind not in FEEDBACK_KINDS:
        raise InvalidInput("send {item_id, kind} with kind click or not_interested", {"field": "kind"})
    with db_session() as session:
        logged = recsys_service.log_events(session, current_user.username, [(item_id, kind)])
    return {"logged": logged, "kind": kind, "item_id": item_id}, 202
