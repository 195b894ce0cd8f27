"""recsys front door (used by web, the worker and the demo): import, index, recommend, history, events."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from newsdesk import locks
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput, NewsdeskError, NotFound, Unavailable
from newsdesk.interactions import LIVE_KINDS
from newsdesk.settings import Settings
from recsys.cache import history_stamp, newest_interaction
from recsys.catalog import ImportReport, Rejection, import_interaction_files, import_items
from recsys.collab import CollabArgs, fit_collab_map
from recsys.embed import count_stale, embed_stale, encoder_version, load_vectors
from recsys.index import read_manifest
from recsys.recommender import Recommender, ensure_index, get_recommender, positive_filter, user_events
from recsys.tables import Interaction, Item, ItemVector
from recsys.topics import label_item_topics

log = logging.getLogger(__name__)

__all__ = [
    "HistoryEntry",
    "ImportReport",
    "IndexStatus",
    "Recommendation",
    "Recommender",
    "Rejection",
    "get_recommender",
    "import_catalog",
    "import_interactions",
    "index_status",
    "Interests",
    "list_interests",
    "list_topics",
    "log_events",
    "rebuild_index",
    "recommend_for_user",
    "user_history",
]

MAX_K = 100
SNIPPET_CHARS = 240


@dataclass
class Recommendation:
    """One feed entry."""

    item_id: str
    title: str
    snippet: str
    category: str
    url: str | None
    published_at: datetime | None
    score: float
    reason: str
    reason_item_id: str | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["published_at"] = self.published_at.isoformat() + "Z" if self.published_at else None
        return out


@dataclass
class IndexStatus:
    """State of the item index for the encoder version in service."""

    model_version: str
    items: int
    vectors: int
    stale: int
    indexed: int
    path: str
    backend: str
    kind: str = ""
    built_at: str | None = None
    collab_items: int = 0
    seconds: float | None = None
    topics_labelled: int = 0  # uncategorised items given a predicted topic by this build

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"model {self.model_version}: {self.items} items, {self.vectors} vectors, {self.stale} stale, "
                f"{self.indexed} indexed ({self.kind or 'none'} on {self.backend}), "
                f"collaborative map {self.collab_items} items"
                + (f", {self.topics_labelled} items given a predicted topic" if self.topics_labelled else ""))


@dataclass
class HistoryEntry:
    """One past interaction of a user, with the item's title."""

    item_id: str
    title: str
    kind: str
    rating: float | None
    ts: datetime

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ts"] = self.ts.isoformat() + "Z"
        return out


# Imports ---------------------------------------------------------------------------------------------------------


def import_catalog(session: Session, paths: Iterable[str | Path]) -> ImportReport:
    """Upsert items from CSV/JSONL/MIND news.tsv; re-imported items with new text get stale vectors.

    Raises:
        NotFound: a file does not exist.
        InvalidInput: a file is not UTF-8 text.
    """
    return import_items(session, paths)


def import_interactions(session: Session, paths: Iterable[str | Path], *,
                        positive_rating: float | None = None) -> ImportReport:
    """Insert interactions from CSV or MIND behaviors.tsv; unknown items are counted, duplicates skipped.

    `positive_rating` (default 4.0) only decides which imported rows the report counts as positives.

    Raises:
        NotFound: a file does not exist.
        InvalidInput: a file is not UTF-8 text.
    """
    return import_interaction_files(session, paths, 4.0 if positive_rating is None else positive_rating)


def log_events(session: Session, user_id: str, events: Sequence[tuple[str, str]]) -> int:
    """Record live feed events (impression, click, not_interested) for a user; returns how many were stored.

    Raises:
        InvalidInput: empty user id, an unknown kind or too many events.
        NotFound: an item is not in the catalog.
    """
    if not user_id or len(user_id) > 128:
        raise InvalidInput("user_id must be 1-128 characters", {"field": "user_id"})
    events = list(events)
    if len(events) > 1000:
        raise InvalidInput("at most 1000 events per call", {"field": "events"})
    for n, (_item_id, kind) in enumerate(events):
        if kind not in LIVE_KINDS:
            raise InvalidInput(f"event {n}: kind must be one of {', '.join(LIVE_KINDS)}, got {kind!r}",
                               {"event": n, "field": "kind"})
    ids = {item_id for item_id, _ in events}
    known = set(session.scalars(sa.select(Item.item_id).where(Item.item_id.in_(ids)))) if ids else set()
    missing = sorted(ids - known)
    if missing:
        raise NotFound(f"unknown item {missing[0]!r}", {"items": missing[:20]})
    now = utcnow()
    if events:
        session.execute(sa.insert(Interaction), [
            {"user_id": user_id, "item_id": item_id, "kind": kind, "rating": None, "ts": now, "source": "web",
             "impression_id": None} for item_id, kind in events])
        session.flush()
    return len(events)


# Recommendations -------------------------------------------------------------------------------------------------


def recommend_for_user(session: Session, settings: Settings, user_id: str, k: int = 10, *,
                       topics: Sequence[str] = ()) -> list[Recommendation]:
    """Top-k items for `user_id` (history from the database; cold start from `topics` or trending).

    Results are reused per (user, k, topics) until the user records a click/rating/not-interested, the index or
    encoder version is reloaded, or `settings.recsys.result_cache_s` passes (see recsys.cache).

    Raises:
        InvalidInput: k outside 1..100 or an empty user id.
        Unavailable: no index can be served yet (run `newsdesk index build`).
    """
    if not user_id:
        raise InvalidInput("user_id is required", {"field": "user_id"})
    if not 1 <= int(k) <= MAX_K:
        raise InvalidInput(f"k must be between 1 and {MAX_K}", {"field": "k"})
    recommender = get_recommender(settings)
    cache = recommender.results
    if cache.enabled:  # stamps read before computing: a change racing this call makes the stored entry stale
        recommender.snapshot(session)
        key = (user_id, int(k), tuple(topics))
        hit, stamp = cache.lookup(key, recommender.generation, newest_interaction(session, user_id),
                                  lambda: history_stamp(session, user_id))
        if hit is not None:
            return hit
    scored = recommender.recommend_events(user_events(session, user_id), int(k), topics, session=session)
    out = _materialise(session, scored)
    if cache.enabled:
        cache.put(key, stamp, out)
    return out


def _materialise(session: Session, scored: list) -> list[Recommendation]:
    rows = {r.item_id: r for r in session.execute(sa.select(
        Item.item_id, Item.title, Item.description, Item.category, Item.topic, Item.url, Item.published_at)
        .where(Item.item_id.in_([s.item_id for s in scored])))} if scored else {}
    out = []
    for s in scored:
        r = rows.get(s.item_id)
        if r is None:  # removed from the catalog since the snapshot was taken
            continue
        snippet = r.description if len(r.description) <= SNIPPET_CHARS else \
            r.description[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "\u2026"
        out.append(Recommendation(r.item_id, r.title, snippet, r.category or r.topic or "", r.url, r.published_at,
                                  s.score, s.reason, s.reason_item_id))
    return out


def list_topics(session: Session, limit: int = 100) -> list[str]:
    """Categories (or predicted topics) and tags, most used first, for onboarding."""
    counts: dict[str, int] = {}
    for category, tags in session.execute(sa.select(sa.func.coalesce(sa.func.nullif(Item.category, ""), Item.topic),
                                                    Item.tags)):
        for value in [category, *(tags or "").split(",")]:
            value = (value or "").strip()
            if value:
                counts[value] = counts.get(value, 0) + 1
    return [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].lower()))[:limit]]


@dataclass
class Interests:
    """What onboarding offers: topics (categories and non-ticker tags, most used first) and every ticker."""

    topics: list[str]
    tickers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"topics": self.topics, "tickers": self.tickers}


def list_interests(session: Session, max_topics: int = 60) -> Interests:
    """Topics and tickers for onboarding, kept apart: a tag that looks like a ticker (upper case, <= 6 characters)
    or a cashtag in a title is a ticker; every ticker is listed (alphabetically), topics most used first. An item
    without a category counts under its predicted topic (recsys/topics.py), so a catalog with no categories offers
    the topic model's taxonomy."""
    from recsys.interests import TICKER_RE, split_values

    topics: dict[str, int] = {}
    tickers: set[str] = set()
    cashtag = re.compile(r"\$([A-Z][A-Z0-9.]{0,5})\b")
    for category, topic, tags, title in session.execute(sa.select(Item.category, Item.topic, Item.tags, Item.title)):
        # a predicted topic is one label of the model's taxonomy ("M&A | Investments"), never split
        for value in split_values(category) if category else [topic] if topic else []:
            topics[value] = topics.get(value, 0) + 1
        for tag in split_values(tags):
            if TICKER_RE.match(tag):
                tickers.add(tag)
            else:
                topics[tag] = topics.get(tag, 0) + 1
        tickers.update(cashtag.findall(title or ""))
    ranked = [t for t, _ in sorted(topics.items(), key=lambda kv: (-kv[1], kv[0].lower()))[:max_topics]]
    return Interests(topics=ranked, tickers=sorted(tickers))


def user_history(session: Session, user_id: str, limit: int = 50) -> list[HistoryEntry]:
    """The user's most recent clicks, ratings and not-interested marks (impressions left out), newest first."""
    rows = session.execute(
        sa.select(Interaction.item_id, Item.title, Interaction.kind, Interaction.rating, Interaction.ts)
        .join(Item, Item.item_id == Interaction.item_id)
        .where(Interaction.user_id == user_id, Interaction.kind != "impression")
        .order_by(Interaction.ts.desc(), Interaction.id.desc()).limit(limit))
    return [HistoryEntry(r.item_id, r.title, r.kind, r.rating, r.ts) for r in rows]


# Index -----------------------------------------------------------------------------------------------------------


def positive_pairs(session: Session, positive_rating: float) -> list[tuple[str, str]]:
    """(user, item) pairs of every positive interaction."""
    return [(u, i) for u, i in session.execute(
        sa.select(Interaction.user_id, Interaction.item_id).where(positive_filter(positive_rating)))]


INDEX_LOCK = "recsys:index"  # held by an index build or sync (newsdesk.locks: in the database, for every machine)


def _one_build_at_a_time(build: Callable[..., IndexStatus]) -> Callable[..., IndexStatus]:
    """Run `build(session, settings, ...)` under the index lock.

    Raises:
        Conflict: another process (on any machine) is building or syncing the index.
    """
    @functools.wraps(build)
    def locked(session: Session, settings: Settings, *args: Any, **kwargs: Any) -> IndexStatus:
        with locks.hold(settings.database_url, INDEX_LOCK, what="an index build",
                        fallback_dir=settings.home / "locks"):
            return build(session, settings, *args, **kwargs)
    return locked


@_one_build_at_a_time
def rebuild_index(session: Session, settings: Settings, *, encoder: Any = None,
                  collab_args: CollabArgs | None = None) -> IndexStatus:
    """Embed stale items, rebuild the FAISS index and refit the collaborative map for the encoder in service.

    Commits after each embedding batch (so an interrupted run keeps its progress).

    Raises:
        Unavailable: the encoder cannot be loaded or the catalog is empty.
    """
    start = time.perf_counter()
    labelled = _label_topics(session, settings)
    version, _ = encoder_version(session, settings)
    embed_stale(session, settings, encoder=encoder, model_version=version if encoder is not None else None,
                commit=True)
    ids, vectors = load_vectors(session, version)
    if not ids:
        raise Unavailable("the catalog is empty: import items first (`newsdesk catalog import FILE`)")
    hashes = dict(session.execute(sa.select(Item.item_id, Item.text_hash)).tuples().all())
    cmap = fit_collab_map(positive_pairs(session, settings.recsys.positive_rating), ids, vectors, collab_args)
    # index, ids, manifest and collaborative map published together, as one new generation
    ensure_index(settings, version, ids, vectors, {i: hashes[i] for i in ids}, force=True, collab=cmap)
    get_recommender(settings).invalidate()
    status = index_status(session, settings)
    status.seconds = round(time.perf_counter() - start, 2)
    status.topics_labelled = labelled
    return status


@_one_build_at_a_time
def sync_index(session: Session, settings: Settings) -> IndexStatus:
    """Embed stale items and add/update/remove them in the saved index without a full rebuild."""
    labelled = relabel_topics(session, settings)
    version, _ = encoder_version(session, settings)
    embed_stale(session, settings, model_version=version, commit=True)
    ids, vectors = load_vectors(session, version)
    if ids:
        hashes = dict(session.execute(sa.select(Item.item_id, Item.text_hash)).tuples().all())
        ensure_index(settings, version, ids, vectors, {i: hashes[i] for i in ids})
    status = index_status(session, settings)
    status.topics_labelled = labelled
    return status


def relabel_topics(session: Session, settings: Settings) -> int:
    """Label stale uncategorised items with the served topic version (recsys/topics.py) and refresh the served
    snapshot when any changed (it shows categories); returns how many were labelled. A topic model that fails to
    load is logged (0)."""
    labelled = _label_topics(session, settings)
    if labelled:
        get_recommender(settings).invalidate()
    return labelled


def _label_topics(session: Session, settings: Settings) -> int:
    """Predicted topics for uncategorised items (recsys/topics.py); a topic model that fails to load is logged and
    leaves the index build alone."""
    try:
        return label_item_topics(session, settings).labelled
    except NewsdeskError as exc:
        log.warning("items not labelled by topic: %s", exc.message)
        session.rollback()
        return 0


def index_status(session: Session, settings: Settings) -> IndexStatus:
    """Counts of items, vectors and stale items, and what the saved index holds."""
    version, _ = encoder_version(session, settings)
    folder = settings.indexes_dir / version
    items = session.scalar(sa.select(sa.func.count()).select_from(Item)) or 0
    vectors = session.scalar(sa.select(sa.func.count()).select_from(ItemVector)
                             .where(ItemVector.model_version == version)) or 0
    indexed, kind, built_at, collab_items = 0, "", None, 0
    try:
        manifest = read_manifest(folder)
        indexed, kind, built_at = manifest.item_count, manifest.kind, manifest.created_at
    except Unavailable:
        pass
    try:
        import json

        collab_items = len(json.loads((folder / "collab.json").read_text())["item_ids"])
    except (OSError, ValueError, KeyError):
        pass
    from newsdesk.device import faiss_gpu_available

    backend = "gpu" if faiss_gpu_available() and kind == "flat" else "cpu"
    return IndexStatus(model_version=version, items=items, vectors=vectors, stale=count_stale(session, version),
                       indexed=indexed, path=str(folder), backend=backend, kind=kind, built_at=built_at,
                       collab_items=collab_items)
