"""recsys commands: catalog/interactions import, index build/status, recommend, eval recsys.

Each parses, calls `recsys.service`, prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from finetune.vocabulary import PROMOTE_MODES
from newsdesk.cli_context import pass_settings
from newsdesk.db import session_scope
from newsdesk.errors import InvalidInput, NotFound
from newsdesk.settings import Settings

FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


def _print_report(report, as_json: bool, show: int = 20) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    click.echo(str(report))
    for empty in getattr(report, "empty_files", []):
        click.echo(f"Warning: {empty} has no rows (an empty file, or only a header?)", err=True)
    for rejection in report.rejected[:show]:
        click.echo(f"  rejected {rejection}")
    if report.rejected_total > show:
        click.echo(f"  ... and {report.rejected_total - show} more rejected rows")
    if report.unknown_items:
        click.echo(f"  {report.unknown_items} rows name items not in the catalog (skipped), e.g. "
                   + ", ".join(report.unknown_examples[:5]))


@click.group("catalog")
def catalog_group() -> None:
    """Import items into the catalog."""


@catalog_group.command("import")
@click.argument("files", nargs=-1, required=True, type=FILES)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_settings
def catalog_import_command(settings: Settings, files: tuple[Path, ...], as_json: bool) -> None:
    """Upsert items from CSV/JSONL (item_id,title[,description,category|genres,tags,url,published_at]) or MIND
    news.tsv files; changed items get re-embedded at the next index build."""
    from recsys import service

    with session_scope(settings.database_url) as session:
        report = service.import_catalog(session, files)
    _print_report(report, as_json)


@click.group("interactions")
def interactions_group() -> None:
    """Import user interactions."""


@interactions_group.command("import")
@click.argument("files", nargs=-1, required=True, type=FILES)
@click.option("--positive-rating", type=float, default=None, help="Rating counted as positive in the report.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_settings
def interactions_import_command(settings: Settings, files: tuple[Path, ...], positive_rating: float | None,
                                as_json: bool) -> None:
    """Import CSV (user_id,item_id[,rating][,timestamp]) or MIND behaviors.tsv files."""
    from recsys import service

    threshold = settings.recsys.positive_rating if positive_rating is None else positive_rating
    with session_scope(settings.database_url) as session:
        report = service.import_interactions(session, files, positive_rating=threshold)
    _print_report(report, as_json)


@click.group("index")
def index_group() -> None:
    """Build and inspect the FAISS item index."""


@index_group.command("build")
@click.option("--sync", is_flag=True, help="Only embed stale items and update the saved index in place.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def index_build_command(settings: Settings, sync: bool, as_json: bool) -> None:
    """Embed stale items, build the index and fit the collaborative map for the encoder in service."""
    from recsys import service

    settings.ensure_dirs()
    with session_scope(settings.database_url) as session:
        status = service.sync_index(session, settings) if sync else service.rebuild_index(session, settings)
    click.echo(json.dumps(status.to_dict()) if as_json else str(status))


@index_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def index_status_command(settings: Settings, as_json: bool) -> None:
    """Show the encoder version, item/vector/stale counts and the saved index."""
    from recsys import service

    with session_scope(settings.database_url) as session:
        status = service.index_status(session, settings)
    click.echo(json.dumps(status.to_dict()) if as_json else str(status))


@click.command("recommend")
@click.option("--user", "user_id", default=None, help="User id.")
@click.option("--users", "users_file", type=FILES, default=None, help="File with one user id per line.")
@click.option("--k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--topic", "topics", multiple=True, help="Topic for a user without history (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per user.")
@pass_settings
def recommend_command(settings: Settings, user_id: str | None, users_file: Path | None, k: int,
                      topics: tuple[str, ...], as_json: bool) -> None:
    """Recommend items for a user (--user) or for each user in a file (--users, JSON lines out)."""
    from recsys import service

    if bool(user_id) == bool(users_file):
        raise InvalidInput("give exactly one of --user or --users FILE")
    users = [user_id] if user_id else [u.strip() for u in users_file.read_text().splitlines() if u.strip()]
    as_json = as_json or users_file is not None
    with session_scope(settings.database_url) as session:
        if user_id and not topics and not _known_user(session, user_id):
            raise NotFound(f"no user {user_id!r}: no interactions and no account (give --topic for a cold start)")
        for user in users:
            recs = service.recommend_for_user(session, settings, user, k, topics=topics)
            if as_json:
                click.echo(json.dumps({"user_id": user, "items": [
                    {"item_id": r.item_id, "score": r.score, "reason": r.reason, "title": r.title} for r in recs]}))
                continue
            click.echo(f"{user}:")
            for n, r in enumerate(recs, start=1):
                click.echo(f"{n:3d}. [{r.item_id}] {r.title}  ({r.score:.3f}; {r.reason})")


def _known_user(session, user_id: str) -> bool:
    """A user with interactions or an account (web's `users` table, read by name only: recsys never imports web)."""
    import sqlalchemy as sa

    from recsys.tables import Interaction

    if session.scalar(sa.select(Interaction.id).where(Interaction.user_id == user_id).limit(1)) is not None:
        return True
    users = sa.table("users", sa.column("username"))
    try:
        return session.scalar(sa.select(users.c.username).where(users.c.username == user_id).limit(1)) is not None
    except sa.exc.OperationalError:  # no accounts table in this database (recsys used without the web app)
        session.rollback()
        return False


@click.command("recsys")
@click.option("--test", "test_file", type=FILES, required=True,
              help="Held-out interactions (CSV user_id,item_id[,rating]) or MIND behaviors.tsv.")
@click.option("--k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--positive-rating", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def eval_recsys_command(settings: Settings, test_file: Path, k: int, positive_rating: float | None,
                        as_json: bool) -> None:
    """Recall@K, NDCG@K, MRR, coverage and new-item hit rate (or MIND AUC/MRR/nDCG@5/10) against the database
    history."""
    from recsys import evaluate

    with session_scope(settings.database_url) as session:
        result = evaluate.evaluate_file(session, settings, test_file, k=k, positive_rating=positive_rating)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:>20}: {value}")


# `newsdesk finetune recsys`: the root CLI adds this command to finetune's group (its targets and served
# evaluation are recsys's, and finetune never imports recsys).
@click.command("recsys")
@click.option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
              help="Dev interactions CSV (user_id,item_id,rating,timestamp); default: each user's newest likes.")
@click.option("--promote", type=click.Choice(PROMOTE_MODES), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the newest interrupted run from its last checkpoint.")
@click.option("--positive-rating", type=float, default=None, help="A rating at or above this is a like.")
@click.option("--max-steps", type=int, default=None)
@click.option("--arg", "extra", multiple=True, help="Any BehaviourArgs field as key=value (repeatable).")
@pass_settings
def finetune_recsys_command(settings: Settings, dev_file: str | None, promote: str, resume: bool,
                   positive_rating: float | None, max_steps: int | None, extra: tuple[str, ...]) -> None:
    """Fine-tune the encoder so that item texts land where behaviour puts the items (EASE targets), gated on the
    served ranking of a cold-item dev split (`--arg objective=pairs`: the earlier liked-pairs fine-tune)."""
    from finetune.cli import _parse_args, _print_outcome
    from finetune.service import retrain
    from recsys.behaviour import behaviour_source

    args = {"positive_rating": settings.recsys.positive_rating, **_parse_args(extra)}
    if positive_rating is not None:
        args["positive_rating"] = positive_rating
    if max_steps is not None:
        args["max_steps"] = max_steps
    _print_outcome(retrain(settings, "recsys", dev_file=dev_file, promote=promote, args=args, trigger="cli",
                           resume=resume, behaviour=behaviour_source(settings, dev_file or
                                                                     settings.finetune.recsys_dev_path or None)))
