"""Offline evaluation of the SERVED ranking without a database: cold-item dev split, in-memory snapshot, metrics.

The hidden MovieLens test holds out the newest 20% of each user's ratings AND 300 items with a description whose
every interaction is held out ("new" items only their text can place). `cold_item_split` makes the same kind of
dev protocol from train + dev: `n_items` items with a description are drawn (seeded), every train interaction of
them is removed, and their dev likes become the new-item targets. `evaluate_served` then ranks each dev user with
the very code that serves (`recsys.rank.rank_for_profile` on a `Snapshot` built in memory from item vectors and the
kept train interactions), so the behaviour fine-tune, the promotion gate and the benchmark all measure what users
are served: Recall@10 / NDCG@10 over all dev likes, and the new-item hit rate.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from recsys.collab import CollabArgs, fit_collab_map
from recsys.evaluate import evaluate_ranker
from recsys.index import ItemIndex
from recsys.profile import CollabRows, Event, build_profile
from recsys.rank import PositiveLog, RankParams, Snapshot, cold_start, rank_for_profile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rating:
    """One interaction row: user, item, rating, unix seconds."""

    user_id: str
    item_id: str
    rating: float
    ts: float = 0.0


@dataclass
class ColdSplit:
    """Train rows with the cold items' interactions removed, the dev rows, and the cold (held-out) items."""

    train: list[Rating]
    dev: list[Rating]
    cold_items: set[str]
    seed: int

    def summary(self, positive_rating: float = 4.0) -> dict[str, Any]:
        known = {r.item_id for r in self.train}
        new_likes = [r for r in self.dev if r.rating >= positive_rating and r.item_id not in known]
        return {"seed": self.seed, "cold_items": len(self.cold_items), "train_rows": len(self.train),
                "dev_new_item_likes": len(new_likes),
                "dev_cold_item_likes": sum(1 for r in new_likes if r.item_id in self.cold_items),
                "dev_users_with_new_likes": len({r.user_id for r in new_likes})}


def cold_item_split(train: Sequence[Rating], dev: Sequence[Rating], described: set[str], *, n_items: int = 300,
                    seed: int = 0) -> ColdSplit:
    """Hold out `n_items` items that have a description and an interaction (every train row of them removed).

    The pool is the described items with at least one train or dev interaction, drawn uniformly with `seed`; when
    the pool is smaller than `n_items`, all of it is held out.
    """
    seen = {r.item_id for r in train} | {r.item_id for r in dev}
    pool = sorted(i for i in described if i in seen)
    rng = np.random.default_rng(seed)
    take = min(n_items, len(pool))
    cold = {pool[i] for i in rng.choice(len(pool), size=take, replace=False)} if take else set()
    kept = [r for r in train if r.item_id not in cold]
    return ColdSplit(train=kept, dev=list(dev), cold_items=cold, seed=seed)


def _events(rows: Sequence[Rating]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for r in rows:
        out[r.user_id].append(Event(r.item_id, "rating", r.rating, datetime.fromtimestamp(r.ts, tz=timezone.utc)
                                    .replace(tzinfo=None)))
    return out


def memory_snapshot(item_ids: Sequence[str], vectors: np.ndarray, train: Sequence[Rating], *,
                    titles: Sequence[str] | None = None, categories: Sequence[str] | None = None,
                    tags: Sequence[str] | None = None, published: Sequence[float] | None = None,
                    positive_rating: float = 4.0, collab_args: CollabArgs | None = None,
                    version: str = "offline") -> Snapshot:
    """The `Snapshot` the server would load for these vectors and interactions (popularity, known, EASE map)."""
    ids = list(item_ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    position = {item_id: n for n, item_id in enumerate(ids)}
    counts, known = np.zeros(len(ids)), np.zeros(len(ids), dtype=bool)
    pairs, liked, liked_ts = [], [], []
    for r in train:
        at = position.get(r.item_id)
        if at is None:
            continue
        known[at] = True
        if r.rating >= positive_rating:
            counts[at] += 1
            pairs.append((r.user_id, r.item_id))
            liked.append(at)
            liked_ts.append(r.ts)
    popularity = np.log1p(counts) / np.log1p(counts.max()) if counts.max() > 0 else counts
    cmap = fit_collab_map(pairs, ids, vectors, collab_args)
    collab = None
    if cmap is not None:
        row_of = np.full(len(ids), -1, dtype=np.int64)
        for row, item_id in enumerate(cmap.item_ids):
            row_of[position[item_id]] = row
        active = np.asarray([position[i] for i in cmap.item_ids], dtype=np.int64)
        collab = CollabRows(row_of=row_of, rows=cmap.rows, scale=cmap.scale, ease=cmap.ease, active=active,
                            text_weight=cmap.args.text_weight, new_item_weight=cmap.args.new_item_weight)
    index = ItemIndex.build(ids, vectors)
    return Snapshot(model_version=version, item_ids=ids, position=position, vectors=vectors,
                    titles=list(titles) if titles is not None else ids,
                    categories=list(categories) if categories is not None else [""] * len(ids),
                    tags=list(tags) if tags is not None else [""] * len(ids),
                    published=np.asarray(published, dtype=np.float64) if published is not None
                    else np.full(len(ids), np.nan), popularity=popularity,
                    trending=np.zeros(len(ids)), index=index, collab=collab, known=known,
                    positives=PositiveLog.build(liked, liked_ts))


def with_new_item_weight(snap: Snapshot, weight: float) -> Snapshot:
    """The same snapshot with another γ (weight of the text score of items without feedback)."""
    if snap.collab is None:
        return snap
    return replace(snap, collab=replace(snap.collab, new_item_weight=weight))


def evaluate_served(snap: Snapshot, train: Sequence[Rating], dev: Sequence[Rating], *,
                    params: RankParams | None = None, k: int = 10, positive_rating: float = 4.0) -> dict[str, Any]:
    """Recall/NDCG/MRR@k and new-item hit rate of the served ranking for every dev user with a like."""
    params = params or RankParams(positive_rating=positive_rating)
    history = _events(train)
    relevant: dict[str, set[str]] = defaultdict(set)
    for r in dev:
        if r.rating >= positive_rating and r.item_id in snap.position:
            relevant[r.user_id].add(r.item_id)
    known = {snap.item_ids[p] for p in np.flatnonzero(snap.known)} if snap.known is not None else set()
    now = time.time()

    def rank(_user: str, events: Sequence[Event], n: int) -> list[str]:
        profile = build_profile(events, snap.position, snap.vectors, snap.collab, positive_rating=positive_rating,
                                half_life=params.history_half_life)
        scored = (cold_start(snap, profile.seen, (), n, params, now) if profile.empty
                  else rank_for_profile(snap, profile, n, params, now))
        return [s.item_id for s in scored]

    return evaluate_ranker(rank, dict(relevant), history, k, snap.item_ids, known)
