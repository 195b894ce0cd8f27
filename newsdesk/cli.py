"""The `newsdesk` command line: settings onto the context, each package's commands loaded lazily, errors -> exits."""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from newsdesk.errors import NewsdeskError, NotImplementedYet
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

# command name -> ("module:attribute", issue number it waits for while the module is missing)
LAZY_COMMANDS: dict[str, tuple[str, int]] = {
    "init": ("newsdesk.cli:init_command", 2),
    "demo": ("newsdesk.demo:demo_command", 2),
    "worker": ("newsdesk.worker:worker_command", 2),
    "serve": ("web.cli:serve_command", 6),
    "users": ("web.cli:users_group", 6),
    "catalog": ("recsys.cli:catalog_group", 4),
    "interactions": ("recsys.cli:interactions_group", 4),
    "index": ("recsys.cli:index_group", 4),
    "recommend": ("recsys.cli:recommend_command", 4),
    "finetune": ("finetune.cli:finetune_group", 3),
    "models": ("finetune.cli:models_group", 3),
    "classify": ("finetune.cli:classify_command", 3),
    "eval": ("newsdesk.cli:eval_group", 3),
    "stream": ("monitor.cli:stream_group", 5),
    "alerts": ("monitor.cli:alerts_group", 5),
}

EVAL_COMMANDS: dict[str, tuple[str, int]] = {
    "sentiment": ("finetune.cli:eval_sentiment_command", 3),
    "topic": ("finetune.cli:eval_topic_command", 3),
    "recsys": ("recsys.cli:eval_recsys_command", 4),
}

HELP = {
    "init": "Create NEWSDESK_HOME and migrate the database to the latest schema.",
    "demo": "Load the bundled demo data (catalog, users, sentiment slice, stream slice).",
    "worker": "Run the scheduler and stream consumers until stopped.",
    "serve": "Run the web app (and, by default, the worker in-process).",
    "users": "Create and list users and API tokens.",
    "catalog": "Import items into the catalog.",
    "interactions": "Import user interactions.",
    "index": "Build and inspect the FAISS item index.",
    "recommend": "Recommend items for a user or a file of users.",
    "finetune": "Fine-tune the sentiment/topic classifiers (or one joint model) or the behaviour encoder.",
    "models": "List, inspect, promote and roll back model versions.",
    "classify": "Classify texts with the current sentiment (or topic) model.",
    "eval": "Evaluate a model version on a data file.",
    "stream": "Replay and consume the financial text stream.",
    "alerts": "List and act on alerts.",
}


def _placeholder(name: str, issue: int) -> click.Command:
    @click.command(name=name, help=f"{HELP.get(name, '')} (not built yet: waits for issue #{issue})",
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def _cmd() -> None:
        raise NotImplementedYet(f"'{name}' is not built yet: it waits for issue #{issue}")

    return _cmd


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (keeps `--help` fast)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        target, issue = self.lazy[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
            return getattr(module, attr)
        except (ModuleNotFoundError, AttributeError) as exc:
            missing = getattr(exc, "name", "") or ""
            if isinstance(exc, ModuleNotFoundError) and not module_name.startswith(missing.split(".")[0]):
                raise
            return _placeholder(name, issue)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx) if name in self.lazy]
        rows += [(n, c.get_short_help_str()) for n, c in self.commands.items() if n not in self.lazy]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))


class RootGroup(LazyGroup):
    """Turns `NewsdeskError` into one `Error: ...` line on stderr and the class's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsdeskError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: full traceback to the log, one line to the user
            log.exception("unexpected error")
            click.echo(f"Error: internal error ({type(exc).__name__}: {exc}); see the log for the traceback", err=True)
            ctx.exit(1)


def pass_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: passes the process's `Settings` (built by the root group) as the first argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        return func(ctx.find_root().obj, *args, **kwargs)

    return wrapper


@click.group(cls=RootGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), default=None, help="Data directory (NEWSDESK_HOME).")
@click.option("--database-url", default=None, help="Database URL (NEWSDESK_DATABASE_URL).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None, help="Compute device.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="newsdesk")
@click.pass_context
def cli(ctx: click.Context, home: str | None, database_url: str | None, device: str | None, verbose: bool) -> None:
    """newsdesk: personalised feeds, financial-text alerts and gated retraining on fine-tuned encoders."""
    from newsdesk.log import setup_logging

    if ctx.obj is None:
        try:
            ctx.obj = Settings.load(home=Path(home) if home else None, database_url=database_url, device=device)
        except NewsdeskError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
    settings: Settings = ctx.obj
    setup_logging("DEBUG" if verbose else settings.log_level, settings.logs_dir)


@click.command("init")
@pass_settings
def init_command(settings: Settings) -> None:
    """Create NEWSDESK_HOME and migrate the database to the latest schema."""
    from newsdesk import db

    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    click.echo(f"Initialised {settings.home} (database {db.get_engine(settings.database_url).url.render_as_string()})")


eval_group = LazyGroup(name="eval", lazy=EVAL_COMMANDS, help=HELP["eval"])


def main() -> None:
    cli(prog_name="newsdesk")


if __name__ == "__main__":
    main()
