"""Offline evaluation: Recall/NDCG/MRR@K, coverage and new-item hit rate; MIND impressions give AUC/MRR/nDCG@5/10.

Definitions (all averaged over test users with at least one relevant item):
Recall@K = hits / min(K, |relevant|) (Liang et al. 2018, as in the EASE paper); NDCG@K with binary gains;
MRR@K = 1/rank of the first hit in the top K (0 if none); coverage = distinct items recommended / catalog size;
new-item hit rate = share of users with a relevant *new* item (no interaction in the database) who get at least one
of them in their top K.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tqdm import tqdm

from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings
from recsys.profile import Event
from recsys.recommender import get_recommender
from recsys.tables import Interaction

log = logging.getLogger(__name__)

Ranker = Callable[[str, Sequence[Event], int], Sequence[str]]


def ranking_metrics(ranked: Sequence[str], relevant: set[str], k: int) -> tuple[float, float, float]:
    """(recall@k, ndcg@k, mrr@k) of one ranked list."""
    top = list(ranked)[:k]
    gains = [1.0 if item in relevant else 0.0 for item in top]
    hits = sum(gains)
    recall = hits / min(k, len(relevant))
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    mrr = next((1.0 / (i + 1) for i, g in enumerate(gains) if g), 0.0)
    return recall, dcg / idcg, mrr


def read_test_positives(path: Path, positive_rating: float) -> dict[str, set[str]]:
    """user -> relevant items from a CSV with user_id,item_id[,rating] (no rating column: every row relevant).

    Raises:
        InvalidInput: the header lacks user_id or item_id.
    """
    out: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = {f.strip().lower() for f in reader.fieldnames or []}
        if not {"user_id", "item_id"} <= fields:
            raise InvalidInput(f"{path}: expected a header with user_id,item_id[,rating]")
        for row in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            rating = row.get("rating", "")
            try:
                if rating and float(rating) < positive_rating:
                    continue
            except ValueError as exc:
                raise InvalidInput(f"{path}:{reader.line_num}: rating {rating!r} is not a number") from exc
            out[row["user_id"]].add(row["item_id"])
    return dict(out)


def histories(session: Session, users: Sequence[str] | None = None, *,
              outside_impressions: bool = False) -> dict[str, list[Event]]:
    """Every stored interaction as profile events, per user (optionally only those not tied to an impression)."""
    query = sa.select(Interaction.user_id, Interaction.item_id, Interaction.kind, Interaction.rating, Interaction.ts)
    if outside_impressions:  # an impression's own clicks are its labels: never history
        query = query.where(Interaction.impression_id.is_(None))
    if users is not None:
        query = query.where(Interaction.user_id.in_(list(users)))
    out: dict[str, list[Event]] = defaultdict(list)
    for r in session.execute(query):
        out[r.user_id].append(Event(r.item_id, r.kind, r.rating, r.ts))
    return out


def evaluate_ranker(rank: Ranker, test: dict[str, set[str]], history: dict[str, list[Event]], k: int,
                    catalog: Sequence[str], known_items: set[str]) -> dict[str, Any]:
    """Metrics of `rank(user, events, k) -> item ids` over the test users."""
    recalls, ndcgs, mrrs, new_hits = [], [], [], []
    shown: set[str] = set()
    for user, relevant in tqdm(sorted(test.items()), desc="evaluating", unit="users", disable=None):
        ranked = list(rank(user, history.get(user, []), k))[:k]
        shown.update(ranked)
        r, n, m = ranking_metrics(ranked, relevant, k)
        recalls.append(r), ndcgs.append(n), mrrs.append(m)
        new = relevant - known_items
        if new:
            new_hits.append(1.0 if new & set(ranked) else 0.0)
    return {"users": len(recalls), f"recall@{k}": _mean(recalls), f"ndcg@{k}": _mean(ndcgs), f"mrr@{k}": _mean(mrrs),
            "coverage": round(len(shown) / max(len(catalog), 1), 4), "new_item_users": len(new_hits),
            "new_item_hit_rate": _mean(new_hits)}


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4) if values else 0.0


def evaluate_file(session: Session, settings: Settings, path: Path, *, k: int = 10,
                  positive_rating: float | None = None) -> dict[str, Any]:
    """Evaluate the served recommender on a held-out file (CSV interactions or MIND behaviors.tsv).

    Raises:
        InvalidInput: the file has no usable rows.
        Unavailable: no index is built yet.
    """
    threshold = settings.recsys.positive_rating if positive_rating is None else positive_rating
    first = path.open(encoding="utf-8-sig").readline()
    recommender = get_recommender(settings)
    if first.count("\t") == 4:
        return evaluate_impressions(session, settings, path)
    test = read_test_positives(path, threshold)
    if not test:
        raise InvalidInput(f"{path} has no relevant (positive) rows")
    history = histories(session, list(test))
    snap = recommender.snapshot(session)
    known = set(session.scalars(sa.select(Interaction.item_id).distinct()))

    def rank(user: str, events: Sequence[Event], n: int) -> list[str]:
        return [s.item_id for s in recommender.recommend_events(events, n)]

    result = evaluate_ranker(rank, test, history, k, snap.item_ids, known)
    return {"model_version": snap.model_version, **result}


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _ndcg_at(labels_sorted: np.ndarray, k: int) -> float:
    gains = labels_sorted[:k]
    dcg = float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))
    ideal = np.sort(labels_sorted)[::-1][:k]
    idcg = float(np.sum(ideal / np.log2(np.arange(2, len(ideal) + 2))))
    return dcg / idcg if idcg > 0 else 0.0


def evaluate_impressions(session: Session, settings: Settings, path: Path) -> dict[str, Any]:
    """MIND-style AUC, MRR, nDCG@5/10 averaged over impressions with both clicks and non-clicks.

    History = the impression's own history column plus the user's stored interactions before it.
    """
    recommender = get_recommender(settings)
    snap = recommender.snapshot(session)
    stored = histories(session, outside_impressions=True)
    aucs, mrrs, n5, n10, skipped, missing = [], [], [], [], 0, 0
    with path.open(encoding="utf-8") as fh:
        for line in tqdm(fh, desc="impressions", unit="lines", disable=None):
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 5:
                skipped += 1
                continue
            _, user, _, hist, shown = parts
            pairs = [t.rsplit("-", 1) for t in shown.split()]
            labels = np.array([1 if lab == "1" else 0 for _, lab in pairs])
            if labels.min() == labels.max():
                skipped += 1
                continue
            ids = [i for i, _ in pairs]
            missing += sum(1 for i in ids if i not in snap.position)
            events = [Event(i, "click") for i in hist.split()] + stored.get(user, [])
            scores = recommender.score_items(events, ids)
            scores = np.where(np.isfinite(scores), scores, -1e9)
            order = np.argsort(-scores, kind="stable")
            ranked = labels[order]
            aucs.append(_auc(labels, scores))
            mrrs.append(float(np.sum(ranked / np.arange(1, len(ranked) + 1)) / ranked.sum()))
            n5.append(_ndcg_at(ranked, 5))
            n10.append(_ndcg_at(ranked, 10))
    return {"model_version": snap.model_version, "impressions": len(aucs), "skipped": skipped,
            "candidates_not_in_catalog": missing, "auc": _mean(aucs), "mrr": _mean(mrrs), "ndcg@5": _mean(n5),
            "ndcg@10": _mean(n10)}
