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
        return func(ctx.find_root().obj, *args, **kwargs)

    return wrapper
