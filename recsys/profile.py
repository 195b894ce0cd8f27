"""User interest vectors from history: recency-weighted positives, split into clusters when they span topics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from newsdesk.interactions import InteractionKind, is_positive

# what hides an item from a user's feed (impressions alone do not)
EXCLUDED_KINDS = (InteractionKind.CLICK, InteractionKind.RATING, InteractionKind.NOT_INTERESTED)
CLUSTER_HISTORY = 100  # most recent positives that the interest clustering looks at


@dataclass(frozen=True)
class CollabRows:
    """The collaborative map aligned to catalog positions: `row_of[p]` is p's row in `rows`/`ease` or -1.

    `rows` are the per-item query vectors in text space, `ease` the EASE weights between the items that had
    positives (row: history item, column: target item), `active` the catalog position of each ease column.
    """

    row_of: np.ndarray
    rows: np.ndarray
    scale: float
    ease: np.ndarray | None = None
    active: np.ndarray | None = None
    text_weight: float = 0.5
    new_item_weight: float = 3.0


@dataclass(frozen=True)
class Event:
    """One history event of a user."""

    item_id: str
    kind: str
    rating: float | None = None
    ts: datetime | None = None


@dataclass
class Profile:
    """What the ranker needs about a user.

    `history` holds catalog positions of positive items (most recent first), `weights` their recency weights,
    `contrib` the weighted per-item query vectors (their sum is the user's query), `clusters` a label per history
    item, `seen` every item id to exclude.
    """

    history: np.ndarray
    weights: np.ndarray
    contrib: np.ndarray
    clusters: np.ndarray
    seen: set[str] = field(default_factory=set)
    verbs: list[str] = field(default_factory=list)
    slots: np.ndarray | None = None  # collaborative row of each history item (-1: none)
    latest: float | None = None  # unix seconds of the newest event with a time (None: no event has one)

    @property
    def empty(self) -> bool:
        return len(self.history) == 0

    def queries(self) -> np.ndarray:
        """The full query first, then one query per interest cluster (when there are several)."""
        full = self.contrib.sum(axis=0, keepdims=True)
        labels = np.unique(self.clusters)
        if len(labels) < 2:
            return full
        return np.vstack([full] + [self.contrib[self.clusters == c].sum(axis=0, keepdims=True) for c in labels])


def build_profile(events: Sequence[Event], position: dict[str, int], vectors: np.ndarray,
                  collab: CollabRows | None, *, positive_rating: float = 4.0,
                  half_life: float = 0.0, max_history: int = 500, max_clusters: int = 3) -> Profile:
    """A profile from `events` (any order); items outside the catalog are ignored.

    `collab` gives each catalog position its collaborative query vector; positions without one (and every item
    when it is None) contribute their text vector (scaled to the rows' typical norm). `half_life` counts positive
    events (0 = no recency decay).
    """
    seen = {e.item_id for e in events if e.kind in EXCLUDED_KINDS}
    times = [_unix(e.ts) for e in events if e.ts is not None]
    latest = max(times) if times else None
    ordered = sorted((e for e in events if is_positive(e.kind, e.rating, positive_rating) and e.item_id in position),
                     key=lambda e: e.ts or datetime.min, reverse=True)
    history, verbs, taken = [], [], set()
    for e in ordered:
        if e.item_id not in taken:
            taken.add(e.item_id)
            history.append(position[e.item_id])
            verbs.append("read" if e.kind == InteractionKind.CLICK else "liked")
        if len(history) >= max_history:
            break
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    if not history:
        return Profile(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, dim), dtype=np.float32),
                       np.zeros(0, dtype=np.int64), seen, [], latest=latest)
    hist = np.asarray(history, dtype=np.int64)
    ranks = np.arange(len(hist), dtype=np.float64)
    weights = 0.5 ** (ranks / half_life) if half_life > 0 else np.ones(len(hist))
    slot = None
    if collab is not None:
        slot = collab.row_of[hist]
        rows = vectors[hist] * collab.scale
        has = slot >= 0
        rows[has] = collab.rows[slot[has]]
    else:
        rows = vectors[hist]
    contrib = (rows * weights[:, None]).astype(np.float32)
    clusters = np.zeros(len(hist), dtype=np.int64)
    recent = min(len(hist), CLUSTER_HISTORY)  # older items join the cluster of their nearest centre
    labels = interest_clusters(vectors[hist[:recent]], max_clusters=max_clusters)
    clusters[:recent] = labels
    if recent < len(hist) and labels.max() > 0:
        centres = np.vstack([vectors[hist[:recent]][labels == c].mean(axis=0) for c in range(labels.max() + 1)])
        clusters[recent:] = np.argmax(vectors[hist[recent:]] @ centres.T, axis=1)
    return Profile(hist, weights, contrib, clusters, seen, verbs, slot, latest)


def _unix(ts: datetime) -> float:
    """Unix seconds of a stored time (naive datetimes are UTC, as the database keeps them)."""
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)).timestamp()


def interest_clusters(vectors: np.ndarray, *, max_clusters: int = 3, min_size: int = 3,
                      iterations: int = 8) -> np.ndarray:
    """Cluster labels for history items (spherical k-means, farthest-point initialisation; deterministic).

    Tries the most clusters first and keeps the first split whose clusters all hold `min_size` items and sit
    further from each other than their members from their own centre; else one cluster.
    """
    n = len(vectors)
    for k in range(min(max_clusters, n // min_size), 1, -1):
        labels, centres = _kmeans(vectors, k, iterations)
        if np.any(np.bincount(labels, minlength=k) < min_size):
            continue
        within = float(np.mean(np.sum(vectors * centres[labels], axis=1)))
        between = float(np.max(centres @ centres.T - 2 * np.eye(k)))
        if between < within:
            return labels
    return np.zeros(n, dtype=np.int64)


def _kmeans(vectors: np.ndarray, k: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    centres = [vectors[0]]
    for _ in range(1, k):
        sims = np.max(vectors @ np.vstack(centres).T, axis=1)
        centres.append(vectors[int(np.argmin(sims))])
    c = np.vstack(centres).astype(np.float64)
    labels = np.zeros(len(vectors), dtype=np.int64)
    for _ in range(iterations):
        new_labels = np.argmax(vectors @ c.T, axis=1)
        if np.array_equal(new_labels, labels) and _ > 0:
            break
        labels = new_labels
        sums = np.eye(k)[labels].T @ vectors  # k x d: member sums per cluster
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), c)
    return labels, c
