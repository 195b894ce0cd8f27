"""The collaborative model: EASE item-item weights, plus their ridge projection onto the item text space.

EASE (Steck 2019) learns B (items x items) from the positives X: scores = x_u B. We regress each target item's
column of B on its text vector: B ≈ Q Vᵀ with Q = B V (VᵀV + μI)⁻¹ (one d-vector per history item). A user's
text query is q_u = Σ_i w_i Q_i over their history, and q_u · v_j scores *any* item j by its text vector alone, so
FAISS inner-product search serves it and places items nobody has rated yet. Items with positives are scored
x_u B_j + α q_u·v_j, the others γ q_u·v_j (α, γ tuned on MovieLens dev; see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from newsdesk.errors import Unavailable
from recsys.index import atomic_write_bytes

log = logging.getLogger(__name__)

MAP_FILE = "collab.npz"
META_FILE = "collab.json"


@dataclass(frozen=True)
class CollabArgs:
    """Hyper-parameters of the collaborative map (tuned on MovieLens dev; stored with each fit)."""

    ease_lambda: float = 250.0  # L2 of EASE; 250 is the usual value for MovieLens-sized data
    ridge_mu: float = 10.0  # L2 of the projection onto the text space
    text_weight: float = 0.5  # α: weight of the text-space score for items that have positives
    new_item_weight: float = 3.0  # γ: weight of the text-space score for items without positives
    max_items: int = 10_000  # most popular items kept in the dense EASE solve (memory: 8·n² bytes while fitting)
    min_positives: int = 20  # below this many positive pairs no map is fitted (text similarity serves)


@dataclass
class CollabMap:
    """Per-item query vectors `rows` and EASE weights `ease` (items that had positives at fit time), and the
    fallback scale for history items without a row."""

    item_ids: list[str]
    rows: np.ndarray
    scale: float
    ease: np.ndarray | None = None
    args: CollabArgs = field(default_factory=CollabArgs)
    stats: dict = field(default_factory=dict)

    def row_index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    def save(self, folder: Path) -> None:
        """Write the map beside the index (atomically)."""
        import io

        buffer = io.BytesIO()
        np.savez(buffer, rows=self.rows.astype(np.float32),
                 ease=(self.ease if self.ease is not None else np.zeros((0, 0))).astype(np.float32))
        atomic_write_bytes(folder / MAP_FILE, buffer.getvalue())
        meta = {"item_ids": self.item_ids, "scale": self.scale, "args": asdict(self.args), "stats": self.stats}
        atomic_write_bytes(folder / META_FILE, json.dumps(meta).encode())

    @classmethod
    def load(cls, folder: Path) -> CollabMap | None:
        """The map saved in `folder`, or None when none was fitted.

        Raises:
            Unavailable: the files are there but unreadable or inconsistent.
        """
        if not (folder / META_FILE).exists():
            return None
        try:
            meta = json.loads((folder / META_FILE).read_text())
            arrays = np.load(folder / MAP_FILE)
            rows = arrays["rows"]
            ease = arrays["ease"] if "ease" in arrays.files else np.zeros((0, 0))  # maps saved before EASE was kept
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot read the collaborative map in {folder}: {exc}") from exc
        n = len(meta["item_ids"])
        if rows.shape[0] != n or ease.shape not in ((n, n), (0, 0)):
            raise Unavailable(f"collaborative map in {folder} is inconsistent")
        return cls(item_ids=meta["item_ids"], rows=rows, scale=float(meta["scale"]),
                   ease=ease if ease.size else None, args=CollabArgs(**meta["args"]), stats=meta.get("stats", {}))


def ease_weights(pairs: np.ndarray, n_items: int, lam: float) -> np.ndarray:
    """EASE B (n_items x n_items, zero diagonal) from (user row, item column) positive pairs."""
    from scipy import sparse

    users = np.unique(pairs[:, 0], return_inverse=True)[1]
    x = sparse.csr_matrix((np.ones(len(pairs), dtype=np.float32), (users, pairs[:, 1])),
                          shape=(users.max() + 1, n_items))
    x.data[:] = 1.0  # repeated pairs count once
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices(n_items)] += lam
    p = np.linalg.inv(gram)
    b = p / (-np.diag(p))
    b[np.diag_indices(n_items)] = 0.0
    return b


def fit_collab_map(pairs: Iterable[tuple[str, str]], item_ids: Sequence[str], vectors: np.ndarray,
                   args: CollabArgs | None = None) -> CollabMap | None:
    """Fit the map from positive (user, item) pairs and the items' text vectors; None when too few positives."""
    args = args or CollabArgs()
    start = time.perf_counter()
    pos = {item_id: i for i, item_id in enumerate(item_ids)}
    user_codes: dict[str, int] = {}
    rows = [(user_codes.setdefault(u, len(user_codes)), pos[i]) for u, i in pairs if i in pos]
    if len(rows) < args.min_positives:
        log.info("only %d positive pairs: no collaborative map (text similarity serves)", len(rows))
        return None
    arr = np.asarray(rows, dtype=np.int64)
    counts = np.bincount(arr[:, 1], minlength=len(item_ids))
    active = np.flatnonzero(counts)
    if len(active) > args.max_items:
        active = active[np.argsort(-counts[active], kind="stable")[:args.max_items]]
    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[active] = np.arange(len(active))
    arr = arr[column[arr[:, 1]] >= 0]
    arr[:, 1] = column[arr[:, 1]]
    b = ease_weights(arr, len(active), args.ease_lambda)
    v = np.asarray(vectors, dtype=np.float64)[active]
    q = b @ v @ np.linalg.inv(v.T @ v + args.ridge_mu * np.eye(v.shape[1]))
    norms = np.linalg.norm(q, axis=1)
    scale = float(np.median(norms[norms > 0])) if np.any(norms > 0) else 1.0
    seconds = time.perf_counter() - start
    log.info("collaborative map: %d items, %d users, %d positives in %.1fs", len(active), len(user_codes),
             len(arr), seconds)
    return CollabMap(item_ids=[item_ids[i] for i in active], rows=q.astype(np.float32), scale=scale,
                     ease=b.astype(np.float32), args=args,
                     stats={"items": len(active), "users": len(user_codes), "positives": len(arr),
                            "seconds": round(seconds, 2)})
