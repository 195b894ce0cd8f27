"""`newsdesk serve` (waitress + the worker in-process) and `newsdesk users create|list|token`."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING

import click

from newsdesk.cli_context import pass_settings
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

        server = create_server(_app(settings, not no_worker), host=host, port=port, threads=threads, ident="newsdesk")
        click.echo(f"newsdesk is serving on http://{host}:{server.effective_port}/ "
                   f"({'with' if not no_worker else 'without'} the worker; Ctrl-C stops)")
        serve_until_stopped(server)
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
@pass_settings
def token_command(settings: Settings, username: str, kind: str) -> None:
    """Create an API token for USERNAME (printed once; only its hash is stored)."""
    from newsdesk import db
    from web.users import create_token

    with db.session_scope(settings.database_url) as session:
        token = create_token(session, username, kind)
    click.echo(token)
