"""recsys's side of the behaviour fine-tune: collaborative targets from EASE, and the served-ranking evaluation.

finetune trains (finetune/behaviour.py) but knows nothing of EASE or of the ranker; this module implements its
`BehaviourSource`: the interactions in the database (minus a cold-item hold-out) give the EASE weights B and the
served text map Q = B·V(VᵀV + μI)⁻¹ on the base vectors V (recsys/collab.py; above `CollabArgs.max_items` items
with positives the factorised ALS model replaces dense EASE, as it does for the served map). With Q = U·R (thin
QR), item j's target is Uᵀ·B[:, j] and the decoder is R, so finetune's loss 1 - cos(R·v_j, Uᵀ·B_j) is the cosine
between the item's EASE column and the column the served map predicts from its text. The evaluation ranks dev users
with the served code (recsys/offline.py) on the cold-item dev split, so the gate compares what users would be
served.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from finetune.args import BehaviourArgs
from finetune.behaviour import TargetData, encode_texts
from newsdesk.db import session_scope
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings
from recsys.collab import CollabArgs, Factored, fit_collab_map
from recsys.embed import BASE_VERSION, load_vectors, save_catalog_vectors
from recsys.offline import ColdSplit, Rating, cold_item_split, evaluate_served, memory_snapshot
from recsys.rank import RankParams
from recsys.tables import Interaction, Item
from recsys.text import item_text

log = logging.getLogger(__name__)


def read_ratings_file(path: str | Path) -> list[Rating]:
    """Rows of a user_id,item_id,rating[,timestamp] CSV (timestamp: unix seconds).

    Raises:
        InvalidInput: a missing column or a non-numeric rating/timestamp (naming the line).
    """
    out = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"user_id", "item_id", "rating"} <= set(reader.fieldnames or []):
            raise InvalidInput(f"{path}: expected a header with user_id,item_id,rating[,timestamp]")
        for row in reader:
            try:
                out.append(Rating(row["user_id"], row["item_id"], float(row["rating"]),
                                  float(row.get("timestamp") or 0.0)))
            except ValueError as exc:
                raise InvalidInput(f"{path}:{reader.line_num}: {exc}") from exc
    return out


def _holdout_newest(rows: list[Rating], fraction: float = 0.1, min_rows: int = 5) -> tuple[list[Rating], list[Rating]]:
    by_user: dict[str, list[Rating]] = {}
    for r in rows:
        by_user.setdefault(r.user_id, []).append(r)
    train, dev = [], []
    for items in by_user.values():
        items.sort(key=lambda r: r.ts)
        n_dev = max(1, int(len(items) * fraction)) if len(items) >= min_rows else 0
        train.extend(items[:len(items) - n_dev])
        dev.extend(items[len(items) - n_dev:])
    return train, dev


@dataclass
class Catalog:
    item_ids: list[str]
    texts: list[str]
    titles: list[str]
    categories: list[str]
    described: set[str]


class ServedBehaviour:
    """`finetune.behaviour.BehaviourSource` for the catalog and interactions in the database."""

    def __init__(self, settings: Settings, dev_file: str | Path | None, args: BehaviourArgs) -> None:
        self.settings = settings
        with session_scope(settings.database_url) as session:
            rows = session.execute(sa.select(Item.item_id, Item.title, Item.category, Item.description,
                                             Item.text_hash).order_by(Item.item_id)).all()
            if not rows:
                raise InvalidInput("the catalog is empty: import items first (newsdesk catalog import)")
            self.catalog = Catalog([r.item_id for r in rows], [item_text(r.title, r.category, r.description)
                                                                for r in rows],
                                   [r.title for r in rows], [r.category or "" for r in rows],
                                   {r.item_id for r in rows if (r.description or "").strip()})
            interactions = [Rating(u, i, float(rt) if rt is not None else (args.positive_rating if k == "click"
                                                                            else 0.0),
                                   ts.replace(tzinfo=timezone.utc).timestamp() if ts else 0.0)
                            for u, i, k, rt, ts in session.execute(
                                sa.select(Interaction.user_id, Interaction.item_id, Interaction.kind,
                                          Interaction.rating, Interaction.ts)
                                .where(Interaction.kind.in_(("rating", "click"))))]
            ids, vectors = load_vectors(session, BASE_VERSION)
        if dev_file:
            train, dev = interactions, read_ratings_file(dev_file)
            self._dev_info: dict[str, Any] = {"file": str(dev_file), "rows": len(dev)}
        else:
            train, dev = _holdout_newest(interactions)
            self._dev_info = {"holdout": "newest 10% of each user's interactions", "rows": len(dev)}
        if not any(r.rating >= args.positive_rating for r in train):
            raise InvalidInput("no positive interactions to train on: import interactions first")
        pool = len(self.catalog.described & ({r.item_id for r in train} | {r.item_id for r in dev}))
        self.split: ColdSplit = cold_item_split(train, dev, self.catalog.described,  # at most a fifth of the pool
                                                n_items=min(args.cold_items, pool // 5), seed=args.cold_seed)
        self.args = args
        self.collab_args = CollabArgs()
        if ids == self.catalog.item_ids:
            self.base_vectors = vectors
        else:  # no (complete) base vectors stored yet: embed the catalog once
            log.info("embedding the catalog with the base encoder (%d items)", len(self.catalog.item_ids))
            self.base_vectors = encode_texts(None, self.catalog.texts, device=settings.device)
        self._vectors: dict[str, np.ndarray] = {}
        self._hashes = [r.text_hash for r in rows]

    def data_info(self) -> dict[str, Any]:
        return {"items": len(self.catalog.item_ids), "dev": self._dev_info,
                "cold_split": self.split.summary(self.args.positive_rating),
                "positive_rating": self.args.positive_rating}

    def training_data(self, args: BehaviourArgs) -> TargetData:
        """EASE on the kept train positives -> targets Uᵀ·B_j and decoder R for items with enough positives."""
        return collab_targets(self.split.train, self.catalog.item_ids, self.catalog.texts, self.base_vectors,
                              args, self.collab_args)

    def vectors(self, folder: Path | None, label: str) -> np.ndarray:
        if folder is None:
            return self.base_vectors
        if label not in self._vectors:
            with session_scope(self.settings.database_url) as session:
                ids, stored = load_vectors(session, label)  # a served version's vectors, when up to date
            if ids == self.catalog.item_ids:
                self._vectors[label] = stored
                return stored
            self._vectors[label] = encode_texts(folder, self.catalog.texts, device=self.settings.device,
                                                max_length=self.args.max_length)
        return self._vectors[label]

    def keep_vectors(self, folder: Path, label: str) -> None:
        """Store the catalog vectors computed for `label` in the model folder, so that `newsdesk index build`
        reuses them (recsys.embed.embed_stale) instead of embedding the catalog again."""
        if label in self._vectors:
            save_catalog_vectors(folder, self.catalog.item_ids, self._hashes, self._vectors[label])

    def evaluate(self, encoder_folder: Path | None, label: str, args: BehaviourArgs) -> dict[str, Any]:
        """Served Recall/NDCG@k and new-item hit rate on the cold-item dev split."""
        vecs = self.vectors(encoder_folder, label)
        snap = memory_snapshot(self.catalog.item_ids, vecs, self.split.train, titles=self.catalog.titles,
                               categories=self.catalog.categories, positive_rating=args.positive_rating,
                               collab_args=self.collab_args, version=label)
        params = RankParams.from_settings(self.settings.recsys, positive_rating=args.positive_rating)
        result = evaluate_served(snap, self.split.train, self.split.dev, params=params, k=args.k,
                                 positive_rating=args.positive_rating)
        log.info("served ranking with %s: %s", label, result)
        return {"served": True, **result}



def collab_targets(train: list[Rating], item_ids: list[str], texts: list[str], base_vectors: np.ndarray,
                   args: BehaviourArgs, collab_args: CollabArgs) -> TargetData:
    """The behaviour objective's targets from the train positives, with the served map's own model
    (`recsys.collab.fit_collab_map`): dense EASE up to `collab_args.max_items` items with positives, the factorised
    ALS model above it, so no n x n matrix is made for a large catalog (B = Y·W·Yᵀ and Q = Y·M stay factored; the
    targets Uᵀ·B_j = (UᵀY)·W·y_j and their norms come from k x k products).

    Raises:
        InvalidInput: no positives, or fewer than two items with `args.min_item_positives` positives.
    """
    pairs = sorted({(r.user_id, r.item_id) for r in train if r.rating >= args.positive_rating})
    cmap = fit_collab_map(pairs, item_ids, base_vectors, replace(collab_args, min_positives=1))
    if cmap is None:
        raise InvalidInput("no positive interactions to train on: import interactions first")
    position = {i: n for n, i in enumerate(item_ids)}
    row = {i: n for n, i in enumerate(cmap.item_ids)}
    counts = np.bincount([row[i] for _, i in pairs if i in row], minlength=len(cmap.item_ids))
    chosen = np.flatnonzero(counts >= args.min_item_positives)
    if len(chosen) < 2:
        raise InvalidInput(f"only {len(chosen)} items have >= {args.min_item_positives} positives: "
                           "import more interactions")
    q = cmap.rows
    dense_q = (q.left.astype(np.float64) @ q.core) if isinstance(q, Factored) else np.asarray(q, dtype=np.float64)
    u, r = np.linalg.qr(dense_q)  # Q = U·R, n x d and d x d
    b = cmap.ease
    if isinstance(b, Factored):
        y, core = b.left.astype(np.float64), b.core.astype(np.float64)
        yc = y[chosen] @ core.T  # row j: (W·y_j)ᵀ, so B_j = Y·(W·y_j)
        targets = (yc @ (u.T @ y).T)  # chosen x d: (Uᵀ·Y·W·y_j)ᵀ
        column_norms = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", yc, y.T @ y, yc), 0.0))
    else:
        dense_b = np.asarray(b, dtype=np.float64)
        targets = (u.T @ dense_b[:, chosen]).T
        column_norms = np.linalg.norm(dense_b[:, chosen], axis=0)
    explained = np.linalg.norm(targets, axis=1) / np.maximum(column_norms, 1e-12)
    weights = np.log1p(counts[chosen]).astype(np.float32)
    weights /= weights.mean()
    chosen_texts = [texts[position[cmap.item_ids[c]]] for c in chosen]
    log.info("behaviour targets (%s): %d items (>= %d positives) of %d with positives, %d users",
             cmap.stats["model"], len(chosen), args.min_item_positives, len(cmap.item_ids), cmap.stats["users"])
    return TargetData(chosen_texts, targets.astype(np.float32), r.astype(np.float32), weights,
                      {"target_items": len(chosen), "items_with_positives": len(cmap.item_ids),
                       "users": cmap.stats["users"], "model": cmap.stats["model"],
                       "target_reachable_share": round(float(np.mean(explained)), 4)})


def behaviour_source(settings: Settings, dev_file: str | Path | None) -> Any:
    """A factory (parsed BehaviourArgs -> `ServedBehaviour`) for `finetune.service.retrain(behaviour=...)`."""

    def make(args: BehaviourArgs) -> ServedBehaviour:
        return ServedBehaviour(settings, dev_file, args)

    return make
