"""Metrics: classification (accuracy, macro-F1, per class, confusion) and ranking (Recall/NDCG@k); primary metrics."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

# task -> (primary metric, higher is better)
PRIMARY: dict[str, tuple[str, bool]] = {"sentiment": ("macro_f1", True), "recsys": ("ndcg@10", True)}


def classification_report(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = gold)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        matrix[index[g], index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = matrix[i, i]
        precision = tp / matrix[:, i].sum() if matrix[:, i].sum() else 0.0
        recall = tp / matrix[i].sum() if matrix[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                            "f1": round(float(f1), 4), "support": int(matrix[i].sum())}
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": round(float(np.trace(matrix) / total), 4) if total else 0.0,
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "per_class": per_class,
        "confusion": {"labels": list(labels), "matrix": matrix.tolist()},
    }


def ranking_metrics(scores: np.ndarray, item_ids: Sequence[str], seen: dict[str, set[str]],
                    relevant: dict[str, set[str]], users: Sequence[str], k: int = 10) -> dict[str, float]:
    """Recall@k and NDCG@k over `users` (rows of `scores` against all `item_ids`), seen items excluded.

    `scores[u, i]` scores item i for users[u]; items in `seen[user]` are never recommended.
    """
    position = {item: i for i, item in enumerate(item_ids)}
    recalls, ndcgs = [], []
    for row, user in enumerate(users):
        rel = relevant.get(user, set()) - seen.get(user, set())
        if not rel:
            continue
        s = scores[row].astype(np.float64, copy=True)
        for item in seen.get(user, ()):  # seen items can never be hits
            if item in position:
                s[position[item]] = -np.inf
        top = np.argpartition(-s, min(k, len(s) - 1))[:k]
        top = top[np.argsort(-s[top])]
        hits = [1.0 if item_ids[i] in rel else 0.0 for i in top]
        recalls.append(sum(hits) / min(len(rel), k))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1.0 / math.log2(r + 2) for r in range(min(len(rel), k)))
        ndcgs.append(dcg / idcg)
    return {f"recall@{k}": round(float(np.mean(recalls)), 4) if recalls else 0.0,
            f"ndcg@{k}": round(float(np.mean(ndcgs)), 4) if ndcgs else 0.0,
            "users": len(recalls)}


def evaluate_encoder_ranking(encode: Any, item_texts: dict[str, str], train_likes: dict[str, list[str]],
                             dev_likes: dict[str, set[str]], k: int = 10, batch_size: int = 64) -> dict[str, float]:
    """Recall/NDCG@k of an encoder: user = mean of liked item vectors, every item ranked by cosine, seen excluded.

    `encode(texts, batch_size)` returns L2-normalised vectors (a SentenceTransformer's encode works).
    """
    item_ids = list(item_texts)
    vectors = np.asarray(encode([item_texts[i] for i in item_ids], batch_size), dtype=np.float32)
    position = {item: i for i, item in enumerate(item_ids)}
    users = [u for u in dev_likes if any(i in position for i in train_likes.get(u, ()))]
    profiles = np.zeros((len(users), vectors.shape[1]), dtype=np.float32)
    for row, user in enumerate(users):
        idx = [position[i] for i in train_likes[user] if i in position]
        profile = vectors[idx].mean(0)
        profiles[row] = profile / (np.linalg.norm(profile) or 1.0)
    seen = {u: set(train_likes.get(u, ())) for u in users}
    return ranking_metrics(profiles @ vectors.T, item_ids, seen, dev_likes, users, k)


def group_likes(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """user -> item ids in order, from (user_id, item_id) tuples."""
    out: dict[str, list[str]] = defaultdict(list)
    for user, item in pairs:
        out[user].append(item)
    return dict(out)
