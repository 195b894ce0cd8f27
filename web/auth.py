"""Login/logout, role checks for pages and bearer tokens for the API."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask import session as flask_session
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from newsdesk.db import session_scope
from newsdesk.errors import Forbidden, NewsdeskError
from newsdesk.inputs import is_ascii_int
from web.extensions import CurrentUser, login_manager
from web.tables import User
from web.users import TokenOwner, authenticate, end_sessions, role_at_least, token_owner

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class ApiAuthError(NewsdeskError):
    """Missing or bad bearer token (HTTP 401)."""

    http_status = 401
    code = "unauthorized"


def db_session():
    """A commit-or-rollback session on the app's database."""
    return session_scope(current_app.config["NEWSDESK_SETTINGS"].database_url)


def _as_current(user: User | TokenOwner, via_token: bool = False) -> CurrentUser:
    return CurrentUser(id=user.id, username=user.username, role=user.role,
                       topics=list(user.topics) if user.topics is not None else None, via_token=via_token)


SESSION_VERSION_KEY = "_sv"


@login_manager.user_loader
def _load_user(user_id: str) -> CurrentUser | None:
    """The session's user, while active and while the session's version is the user's (see `users.end_sessions`)."""
    if not is_ascii_int(user_id):
        return None
    with db_session() as session:
        user = session.get(User, int(user_id))
        if user is None or not user.active or flask_session.get(SESSION_VERSION_KEY) != user.session_version:
            return None
        return _as_current(user)


def role_required(role: str) -> Callable:
    """Page decorator: logged in (else to the login page) and at least `role` (else 403)."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not role_at_least(current_user.role, role):
                raise Forbidden(f"this page needs the {role} role")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiAuthError("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


def token_required(role: str = "reader", kind: str = "user") -> Callable:
    """API decorator: a valid bearer token of `kind` whose user has at least `role`; sets `g.api_user`."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _bearer()
            with db_session() as session:
                user = token_owner(session, token, kind)
                if user is None:
                    raise ApiAuthError(f"invalid or revoked {kind} token")
                g.api_user = _as_current(user, via_token=True)
            if not role_at_least(g.api_user.role, role):
                raise Forbidden(f"this endpoint needs the {role} role")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def home_for(user: CurrentUser) -> str:
    """Where a role lands after login."""
    if user.role == "admin":
        return url_for("console.index")
    if user.role == "analyst":
        return url_for("dashboard.index")
    return url_for("feed.index")


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this site (no scheme, host, backslash or control character), else None."""
    if not target or any(ord(c) < 32 or ord(c) == 127 for c in target) or "\\" in target:
        return None  # CR/LF would split the Location header; a backslash reads as // in some browsers
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The login form; failed attempts are throttled per account and per client address (web.throttle)."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    status = 200
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("login.html", form=form), 400
        throttle = current_app.extensions["newsdesk_throttle"]
        username, address = form.username.data, request.remote_addr or "?"
        verdict = throttle.check(username, address)
        if verdict.account_wait:  # no password is checked while the account backs off, from any address
            return _too_many(form, verdict.account_wait)
        with db_session() as session:
            user = authenticate(session, username, form.password.data)
            found = _as_current(user) if user is not None else None
            version = user.session_version if user is not None else None
        if found is not None:  # a correct password gets in even from a throttled (shared) address
            throttle.succeeded(username)
            flask_session.clear()  # no state carried over from before the login (session fixation)
            flask_session.permanent = True  # expires after web.session_minutes, in the browser too
            flask_session[SESSION_VERSION_KEY] = version
            login_user(found)
            return redirect(safe_next(request.args.get("next")) or home_for(found))
        throttle.fail(username, address)
        if verdict.address_wait:
            return _too_many(form, verdict.address_wait)
        flash("Wrong username or password.", "error")
        status = 401
    return render_template("login.html", form=form), status


def _too_many(form: LoginForm, wait: float) -> Any:
    flash(f"Too many failed logins; try again in {int(wait) + 1} s.", "error")
    response = current_app.make_response((render_template("login.html", form=form), 429))
    response.headers["Retry-After"] = str(int(wait) + 1)
    return response


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    """Sign out: ends this user's sessions everywhere (a copied cookie stops working too)."""
    if current_user.is_authenticated:
        with db_session() as session:
            user = session.get(User, current_user.id)
            if user is not None:
                end_sessions(user)
    logout_user()
    flask_session.pop(SESSION_VERSION_KEY, None)
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/")
def root() -> Any:
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    return redirect(url_for("auth.login"))
