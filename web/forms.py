"""The small action forms shared by the dashboard, rules and console pages: CSRF check and flashed errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import flash
from flask_wtf import FlaskForm

from newsdesk.errors import InvalidInput, NewsdeskError


class ActionForm(FlaskForm):
    """CSRF token only; fields are read from request.form and validated in the view."""


def require_valid_form() -> None:
    """Raises InvalidInput when the posted form's CSRF token is missing or expired."""
    if not ActionForm().validate_on_submit():
        raise InvalidInput("the form expired; reload the page", {"field": "csrf_token"})


@contextmanager
def flashed_errors(prefix: str = "", reraise_status: tuple[int, ...] = ()) -> Iterator[None]:
    """Turns a user-facing NewsdeskError into an error flash; server errors (>= 500) and `reraise_status` propagate."""
    try:
        yield
    except NewsdeskError as exc:
        if exc.http_status >= 500 or exc.http_status in reraise_status:
            raise
        flash(prefix + exc.message, "error")
