"""What every package's commands share: the process's `Settings`, built once by the root group, from the context.

Its own module (not `newsdesk.cli`) so the package CLIs do not import the root that loads them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


def pass_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: passes the process's `Settings` (built by the root group) as the first argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        root = ctx.find_root()
        if root.invoked_subcommand not in CREATES_HOME:
            require_database(root.obj)
        return func(root.obj, *args, **kwargs)

    return wrapper


# Commands that create NEWSDESK_HOME and migrate the database themselves; every other one needs `init` done first.
CREATES_HOME = frozenset({None, "init", "demo", "serve", "worker", "stream"})  # stream replay/consume migrate too


def require_database(settings: Any) -> None:
    """A clear error (exit 7) instead of "no such table: users" or a silently created empty ./var.

    Raises:
        Unavailable: no database under NEWSDESK_HOME, or one that was never migrated.
    """
    from pathlib import Path

    from newsdesk import db
    from newsdesk.errors import Unavailable

    hint = "run `newsdesk init` (or `make run`) first, or point NEWSDESK_HOME (--home) at an initialised folder"
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).is_file():
            raise Unavailable(f"no newsdesk database at {path}: {hint}")
    if not db.current_heads(url):
        raise Unavailable(f"the database {db.get_engine(url).url.render_as_string()} is not initialised: {hint}")
