"""`newsdesk demo`: loads the bundled demo data (part of the composition root, so it may call every package)."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import random
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import click

from newsdesk import db
from newsdesk.db import utcnow
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).parent
DEMO_USERS = (("reader", "reader"), ("analyst", "analyst"), ("admin", "admin"))
# Demo reader's interests: the feed should lead with these.
READER_TOPICS = ("earnings", "tech")
SENTIMENT_DEMO_ARGS: dict = {"preset": "demo"}


def _rebased_catalog(target: Path) -> Path:
    """Copy headlines.csv with published_at shifted so the newest item is published now (freshness looks live)."""
    with open(DEMO_DIR / "headlines.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    stamps = [datetime.fromisoformat(r["published_at"].rstrip("Z")) for r in rows]
    shift = utcnow() - max(stamps)
    for row, ts in zip(rows, stamps):
        row["published_at"] = (ts + shift).replace(microsecond=0).isoformat() + "Z"
    _write_csv(target, list(rows[0].keys()), rows)
    return target


def _demo_interactions(target: Path, catalog: Path, seed: int = 7) -> Path:
    """Synthetic readers with one or two favourite topics click items of those topics (fixed seed)."""
    with open(catalog, newline="") as fh:
        items = list(csv.DictReader(fh))
    by_topic: dict[str, list[dict]] = {}
    for item in items:
        by_topic.setdefault(item["category"], []).append(item)
    topics = sorted(t for t, v in by_topic.items() if len(v) >= 10)
    rng = random.Random(seed)
    now = utcnow()
    rows = []
    readers = [("reader", READER_TOPICS)] + [
        (f"demo-user-{i:03d}", tuple(rng.sample(topics, rng.choice((1, 2))))) for i in range(80)
    ]
    for user, favourites in readers:
        pool = [it for t in favourites if t in by_topic for it in by_topic[t]]
        picks = rng.sample(pool, min(len(pool), rng.randint(6, 14)))
        if user != "reader":  # real readers also click outside their topics now and then
            picks += rng.sample(items, 2)
        for n, item in enumerate(picks):
            ts = now - timedelta(hours=len(picks) - n)
            rows.append({"user_id": user, "item_id": item["item_id"], "rating": "5",
                         "timestamp": str(int(ts.timestamp()))})
    _write_csv(target, ["user_id", "item_id", "rating", "timestamp"], rows)
    return target


# The demo slice is replayed up to the message that starts the $FB volume spike of 30 July 2015 (line 3,591 of
# 4,000), so that real rules over real data leave an alert firing for a new analyst to act on.
DEMO_STREAM_LINES = 3591
# Its last message is placed just over monitor's live skew (a day) before now: the rules then keep the replay's own
# clock (the newest message time) and the alerts firing at its end stay firing until live messages arrive, instead
# of resolving an hour later on the wall clock.
DEMO_STREAM_END_AGO = timedelta(days=1, hours=2)


def _rebased_stream(target: Path, lines: int = DEMO_STREAM_LINES) -> Path:
    """Copy the first `lines` lines of stream.jsonl.gz with timestamps shifted so that the last one is
    DEMO_STREAM_END_AGO before now (keeps order and gaps)."""
    with gzip.open(DEMO_DIR / "stream.jsonl.gz", "rt") as fh:
        msgs = [json.loads(line) for _, line in zip(range(lines), fh)]
    stamps = [datetime.fromisoformat(m["ts"].rstrip("Z")) for m in msgs]
    shift = (utcnow() - DEMO_STREAM_END_AGO) - max(stamps)
    with gzip.open(target, "wt") as fh:
        for msg, ts in zip(msgs, stamps):
            msg["ts"] = (ts + shift).replace(microsecond=0).isoformat() + "Z"
            fh.write(json.dumps(msg) + "\n")
    return target


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _create_users(settings: Settings) -> list[tuple[str, str, str]]:
    """Create the demo users that do not exist yet; returns (username, role, password) for those created."""
    from newsdesk.errors import Conflict
    from web.users import create_user

    created = []
    for username, role in DEMO_USERS:
        password = settings.web.demo_password or secrets.token_urlsafe(9)
        try:
            with db.session_scope(settings.database_url) as session:
                create_user(session, username, password, role)
        except Conflict:
            continue  # already there from an earlier run: keep its password
        created.append((username, role, password))
    return created


def load_demo(settings: Settings, *, train: bool = True, replay: bool = True) -> dict:
    """Load every demo slice; each step is idempotent so `newsdesk demo` can be run again safely."""
    from finetune import service as finetune_service
    from monitor import service as monitor_service
    from monitor.replay import replay_file
    from recsys import service as recsys_service

    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    work = settings.home / "demo"
    work.mkdir(exist_ok=True)
    summary: dict = {"users": _create_users(settings)}

    catalog = _rebased_catalog(work / "headlines.csv")
    with db.session_scope(settings.database_url) as session:
        summary["catalog"] = recsys_service.import_catalog(session, [catalog])
    marker = work / "interactions.done"
    if not marker.exists():
        interactions = _demo_interactions(work / "interactions.csv", catalog)
        with db.session_scope(settings.database_url) as session:
            summary["interactions"] = recsys_service.import_interactions(session, [interactions])
        marker.touch()

    if train:
        with db.session_scope(settings.database_url) as session:
            current = finetune_service.current_version(session, "sentiment")
            if current is None:  # queued, not trained here: `serve` answers at once and its worker trains it
                # one joint model: sentiment and topic from one encoder pass, as the stream uses them
                run_id = finetune_service.request_retrain(
                    session, "multitask", "demo", train_files=[DEMO_DIR / "sentiment_train.csv"],
                    dev_file=DEMO_DIR / "sentiment_dev.csv", topic_train_files=[DEMO_DIR / "topic_train.csv"],
                    topic_dev_file=DEMO_DIR / "topic_dev.csv", args=SENTIMENT_DEMO_ARGS, promote="auto",
                    trigger="demo")
                summary["sentiment"] = (f"first sentiment + topic model queued as training run {run_id}: the worker "
                                        "(`newsdesk serve` or `newsdesk worker`) trains it in the background; "
                                        "messages wait for it")
            else:
                summary["sentiment"] = f"model {current.version} already serving"

    with db.session_scope(settings.database_url) as session:
        summary["index"] = recsys_service.rebuild_index(session, settings)

    with db.session_scope(settings.database_url) as session:
        monitor_service.ensure_default_rules(session)
        monitor_service.ensure_default_watchlist(session)
    stream_marker = work / "stream.done"
    if replay and not stream_marker.exists():
        stream = _rebased_stream(work / "stream.jsonl.gz")
        summary["stream"] = replay_file(settings, stream, to="direct")
        stream_marker.touch()
    return summary


def describe(key: str, value: object) -> str:
    """One short line per summary entry (counts, not a dataclass repr)."""
    if key in ("catalog", "interactions"):
        parts = [f"{value.imported} imported"]  # type: ignore[attr-defined]
        for attr in ("updated", "unchanged", "duplicates", "rejected_total", "unknown_items"):
            count = getattr(value, attr, 0)
            if count:
                parts.append(f"{count} {attr.replace('_total', '').replace('_', ' ')}")
        return ", ".join(parts)
    if key == "index":
        secs = getattr(value, "seconds", None)
        took = f" in {secs:.1f} s" if secs else ""
        return (f"{value.indexed} of {value.items} items indexed{took} "  # type: ignore[attr-defined]
                f"(encoder {value.model_version}, {value.backend})")  # type: ignore[attr-defined]
    if key == "stream":
        return (f"{value.sent} of {value.read} messages replayed in "  # type: ignore[attr-defined]
                f"{value.seconds:.1f} s")  # type: ignore[attr-defined]
    return str(value)


@click.command("demo")
@click.option("--no-train", is_flag=True, help="Skip training the first sentiment model.")
@click.option("--no-replay", is_flag=True, help="Skip replaying the demo stream.")
@click.pass_context
def demo_command(ctx: click.Context, no_train: bool, no_replay: bool) -> None:
    """Load the bundled demo data: catalog, readers, a first sentiment model, the index and a stream slice."""
    settings: Settings = ctx.find_root().obj
    summary = load_demo(settings, train=not no_train, replay=not no_replay)
    for key in ("catalog", "interactions", "sentiment", "index", "stream"):
        if key in summary:
            click.echo(f"{key}: {describe(key, summary[key])}")
    creds = settings.home / "demo_credentials.txt"
    if summary["users"]:
        lines = [f"{u} ({role}): password {pw}" for u, role, pw in summary["users"]]
        tmp = creds.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, creds)
    if creds.exists():
        click.echo("Demo logins (also in " + str(creds) + "):")
        click.echo(creds.read_text().rstrip())
