"""The `newsdesk` command line: settings onto the context, each package's commands loaded lazily, errors -> exits."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from newsdesk.cli_context import pass_settings
from newsdesk.errors import NewsdeskError
from newsdesk.settings import Settings

log = logging.getLogger(__name__)



# Each package's CLI module, imported only when one of its commands runs or shows its own --help (keeps the root
# `--help` fast: torch and friends load only when needed). Plain imports: an IDE and the layers test follow them.
def _newsdesk_cli() -> ModuleType:
    return sys.modules[__name__]


def _demo_cli() -> ModuleType:
    from newsdesk import demo

    return demo


def _worker_cli() -> ModuleType:
    from newsdesk import worker

    return worker


def _web_cli() -> ModuleType:
    from web import cli

    return cli


def _recsys_cli() -> ModuleType:
    from recsys import cli

    return cli


def _finetune_cli() -> ModuleType:
    from finetune import cli
    from recsys.cli import finetune_recsys_command

    # `finetune recsys` lives in recsys (its targets and served evaluation are recsys's); it joins finetune's group
    cli.finetune_group.add_command(finetune_recsys_command, "recsys")
    return cli


def _monitor_cli() -> ModuleType:
    from monitor import cli

    return cli


Loader = tuple[Callable[[], ModuleType], str]  # (module loader, name of the click command in it)

LAZY_COMMANDS: dict[str, Loader] = {
    "init": (_newsdesk_cli, "init_command"),
    "demo": (_demo_cli, "demo_command"),
    "worker": (_worker_cli, "worker_command"),
    "serve": (_web_cli, "serve_command"),
    "users": (_web_cli, "users_group"),
    "catalog": (_recsys_cli, "catalog_group"),
    "interactions": (_recsys_cli, "interactions_group"),
    "index": (_recsys_cli, "index_group"),
    "recommend": (_recsys_cli, "recommend_command"),
    "finetune": (_finetune_cli, "finetune_group"),
    "models": (_finetune_cli, "models_group"),
    "classify": (_finetune_cli, "classify_command"),
    "eval": (_newsdesk_cli, "eval_group"),
    "stream": (_monitor_cli, "stream_group"),
    "alerts": (_monitor_cli, "alerts_group"),
    "jobs": (_newsdesk_cli, "jobs_group"),
}

EVAL_COMMANDS: dict[str, Loader] = {
    "sentiment": (_finetune_cli, "eval_sentiment_command"),
    "topic": (_finetune_cli, "eval_topic_command"),
    "recsys": (_recsys_cli, "eval_recsys_command"),
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
    "jobs": "Scheduled job executions (which worker ran each tick) and the worker running the schedule.",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (keeps `--help` fast).

    A subcommand whose module fails to import (or lacks the attribute) fails loudly: `Error: ...`, exit 1, the
    traceback in the log; it is never shown as a working command.
    """

    def __init__(self, *args: Any, lazy: dict[str, Loader] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        load, attr = self.lazy[name]
        try:
            return getattr(load(), attr)
        except Exception as exc:  # any import-time failure (even a SyntaxError): reported, never hidden
            log.exception("cannot load the %r command (%s)", name, attr)
            raise click.ClickException(f"the '{name}' command cannot be loaded ({type(exc).__name__}: {exc})") \
                from exc

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
    # no log folder created as a side effect: a command run from the wrong folder must not leave an empty ./var
    setup_logging("DEBUG" if verbose else settings.log_level, settings.logs_dir if settings.home.is_dir() else None)


@click.command("init")
@pass_settings
def init_command(settings: Settings) -> None:
    """Create NEWSDESK_HOME and migrate the database to the latest schema."""
    from newsdesk import db

    settings.ensure_dirs()
    Settings.load(home=settings.home)  # now that the home exists: keeps its session secret (mode 0600) there
    db.upgrade(settings.database_url)
    click.echo(f"Initialised {settings.home} (database {db.get_engine(settings.database_url).url.render_as_string()})")


eval_group = LazyGroup(name="eval", lazy=EVAL_COMMANDS, help=HELP["eval"])


class OneLineUsageGroup(click.Group):
    """A group whose commands report a bad flag or value as one `Error: ...` line (exit 2), not a usage block."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            ctx.exit(exc.exit_code)


@click.group("jobs", cls=OneLineUsageGroup, help=HELP["jobs"])
def jobs_group() -> None:
    pass


@jobs_group.command("history")
@click.option("--job", "job_id", default=None, help="Only this job id (e.g. monitor-notify).")
@click.option("--worker", default=None, help="Only runs by this worker (host:pid).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_settings
def jobs_history_command(settings: Settings, job_id: str | None, worker: str | None, limit: int,
                         as_json: bool) -> None:
    """Executions of the scheduled jobs, newest tick first: job, worker, scheduled time, start, end, outcome."""
    import json

    from newsdesk import jobruns
    from newsdesk.db import session_scope

    with session_scope(settings.database_url) as session:
        runs = jobruns.history(session, job_id=job_id, worker=worker, limit=limit)
    if as_json:
        for run in runs:
            click.echo(json.dumps(run.to_dict()))
        return
    click.echo(f"{'SCHEDULED (UTC)':19}  {'JOB':26} {'WORKER':24} {'OUTCOME':11} {'SECONDS':>8}  DETAIL")
    for run in runs:
        seconds = f"{run.seconds:8.2f}" if run.seconds is not None else f"{'-':>8}"
        click.echo(f"{run.scheduled_at:%Y-%m-%d %H:%M:%S}  {run.job_id[:26]:26} {run.worker[:24]:24} "
                   f"{run.outcome:11} {seconds}  {run.detail[:60]}")
    click.echo(f"{len(runs)} run(s)")


@jobs_group.command("leader")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def jobs_leader_command(settings: Settings, as_json: bool) -> None:
    """The worker running the scheduled jobs now (the holder of the scheduler lock)."""
    import json

    from newsdesk import jobruns, locks

    who = locks.holder(settings.database_url, jobruns.SCHEDULER_LOCK, fallback_dir=settings.home / "locks")
    if as_json:
        click.echo(json.dumps({"leader": who.owner if who else None}))
    else:
        click.echo(f"scheduled jobs run on {who.owner or 'a worker (unnamed)'}" if who
                   else "no worker runs the scheduled jobs (none is running, or none could reach the database)")


PRIVATE_UMASK = 0o027  # the database, its WAL, logs, models and indexes: owner read-write, group read, others nothing


def main() -> None:
    import os

    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)  # never looser than the caller's umask
    cli(prog_name="newsdesk")


if __name__ == "__main__":
    main()
