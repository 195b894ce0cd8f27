"""`newsdesk serve` (waitress + the worker in-process) and `newsdesk users create|list|token|tokens|revoke-token|
deactivate|set-role|set-password`."""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

import click

from newsdesk.cli_context import pass_settings
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings
from web.prefork import serve_prefork, serve_until_stopped
from web.vocabulary import ROLES, TOKEN_KINDS

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)


@click.command("serve")
@click.option("--host", default=None, help="Address to bind (default: settings web.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: settings web.port, 5000).")
@click.option("--no-worker", is_flag=True, help="Do not run the scheduler and consumers in this process.")
@click.option("--threads", type=click.IntRange(2, 64), default=16, show_default=True,
              help="Server threads per process (each live dashboard holds one for its event stream).")
@click.option("--workers", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Server processes sharing the port (one Python GIL each); the worker runs in the first only.")
@pass_settings
def serve_command(settings: Settings, host: str | None, port: int | None, no_worker: bool, threads: int,
                  workers: int) -> None:
    """Run the web app with waitress (and, by default, the worker in-process)."""
    from newsdesk import db

    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    host = host or settings.web.host
    port = settings.web.port if port is None else port
    if workers == 1:
        from waitress import create_server

        from web.prefork import bind

        sock = bind(host, port)  # before the app and its worker start: a busy port is a clean exit 7
        app = _app(settings, not no_worker)
        server = create_server(app, sockets=[sock], threads=threads, ident="newsdesk")
        click.echo(f"newsdesk is serving on http://{host}:{sock.getsockname()[1]}/ "
                   f"({'with' if not no_worker else 'without'} the worker; Ctrl-C stops)")
        serve_until_stopped(server, app)
        return

    def announce(bound_port: int) -> None:
        click.echo(f"newsdesk is serving on http://{host}:{bound_port}/ with {workers} processes "
                   f"({'with' if not no_worker else 'without'} the worker in the first; Ctrl-C stops)")

    serve_prefork(lambda first: _app(settings, first and not no_worker), host, port, workers, threads, announce)


def _app(settings: Settings, start_worker: bool) -> Flask:
    """The app for one server process, built on this process's runtime (one classifier handle, shared with the
    in-process worker), with the recommender's snapshot loading in the background (so the first feed request does
    not pay the seconds it takes to read the vectors, index and collaborative map)."""
    import threading

    from newsdesk.runtime import Runtime
    from web import create_app

    runtime = Runtime(settings)
    app = create_app(settings, runtime=runtime, start_worker=start_worker)
    threading.Thread(target=runtime.warm_recommender, name="warm-recommender", daemon=True).start()
    return app


@click.group("users")
def users_group() -> None:
    """Create and list users and API tokens."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="reader", show_default=True)
@click.option("--password", default=None, help="Password (a random one is generated and printed when omitted).")
@pass_settings
def create_command(settings: Settings, username: str, role: str, password: str | None) -> None:
    """Create USERNAME with a role."""
    from newsdesk import db
    from web.users import create_user

    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    with db.session_scope(settings.database_url) as session:
        create_user(session, username, password, role)
    click.echo(f"Created {username} ({role})" + (f"; password: {password}" if generated else ""))


@users_group.command("list")
@pass_settings
def list_command(settings: Settings) -> None:
    """List users with their role."""
    from newsdesk import db
    from web.users import list_users

    with db.session_scope(settings.database_url) as session:
        rows = [(u.username, u.role, u.active, u.created_at) for u in list_users(session)]
    if not rows:
        click.echo("No users yet: newsdesk users create NAME --role reader|analyst|admin")
        return
    click.echo(f"{'username':24} {'role':8} {'active':6} created (UTC)")
    for name, role, active, created in rows:
        click.echo(f"{name:24} {role:8} {'yes' if active else 'no':6} {created:%Y-%m-%d %H:%M}")


@users_group.command("token")
@click.argument("username")
@click.option("--kind", type=click.Choice(TOKEN_KINDS), default="user", show_default=True,
              help="user: the API as this user; ingest: POST /api/v1/ingest only.")
@click.option("--expires", default=None, metavar="DURATION",
              help="Valid for this long (30d, 12h, 90m); default: until revoked.")
@pass_settings
def token_command(settings: Settings, username: str, kind: str, expires: str | None) -> None:
    """Create an API token for USERNAME (printed once; only its hash is stored)."""
    from newsdesk import db
    from web.users import create_token

    expires_in = parse_duration(expires) if expires else None
    with db.session_scope(settings.database_url) as session:
        token = create_token(session, username, kind, expires_in)
    click.echo(token)


@users_group.command("tokens")
@click.argument("username", required=False)
@pass_settings
def tokens_command(settings: Settings, username: str | None) -> None:
    """List API tokens (id, user, kind, prefix, expiry), newest first."""
    from newsdesk import db
    from web.users import list_tokens

    with db.session_scope(settings.database_url) as session:
        tokens = list_tokens(session, username)
    if not tokens:
        click.echo("No tokens.")
        return
    click.echo(f"{'id':>5} {'username':20} {'kind':7} {'prefix':13} {'expires (UTC)':17} state")
    for t in tokens:
        expires = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never"
        click.echo(f"{t.id:>5} {t.username:20} {t.kind:7} {t.prefix:13} {expires:17} "
                   f"{'revoked' if t.revoked else 'active'}")


@users_group.command("revoke-token")
@click.argument("token_id", type=click.IntRange(1, 2**31 - 1))
@pass_settings
def revoke_token_command(settings: Settings, token_id: int) -> None:
    """Revoke the API token TOKEN_ID (see `newsdesk users tokens`)."""
    from newsdesk import db
    from web.users import revoke_token

    with db.session_scope(settings.database_url) as session:
        revoke_token(session, token_id)
    click.echo(f"Revoked token {token_id}")


@users_group.command("deactivate")
@click.argument("username")
@click.option("--activate", is_flag=True, help="Reactivate instead.")
@pass_settings
def deactivate_command(settings: Settings, username: str, activate: bool) -> None:
    """Deactivate USERNAME: no login, no API token, every open session ended."""
    from newsdesk import db
    from web.users import set_active

    with db.session_scope(settings.database_url) as session:
        set_active(session, username, activate)
    click.echo(f"{'Activated' if activate else 'Deactivated'} {username}")


@users_group.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(["reader", "analyst", "admin"]))
@pass_settings
def set_role_command(settings: Settings, username: str, role: str) -> None:
    """Give USERNAME another role (their open sessions end)."""
    from newsdesk import db
    from web.users import set_role

    with db.session_scope(settings.database_url) as session:
        set_role(session, username, role)
    click.echo(f"{username} is now {role}")


@users_group.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new password (prompted for when omitted).")
@pass_settings
def set_password_command(settings: Settings, username: str, password: str) -> None:
    """Set USERNAME's password (their open sessions end)."""
    from newsdesk import db
    from web.users import set_password

    with db.session_scope(settings.database_url) as session:
        set_password(session, username, password)
    click.echo(f"Password of {username} changed")


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` -> timedelta.

    Raises:
        InvalidInput: anything else, or zero.
    """
    match = re.fullmatch(r"([0-9]{1,6})([dhm])", text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(f"--expires must look like 30d, 12h or 90m, got {text!r}", {"field": "expires"})
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(days=number) if unit == "d" else timedelta(hours=number) if unit == "h" else \
        timedelta(minutes=number)
