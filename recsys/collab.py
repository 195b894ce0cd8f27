"""The collaborative model: EASE item-item weights, plus their ridge projection onto the item text space.

EASE (Steck 2019) learns B (items x items) from the positives X: scores = x_u B. We regress each target item's
column of B on its text vector: B ≈ Q Vᵀ with Q = B V (VᵀV + μI)⁻¹ (one d-vector per history item). A user's
text query is q_u = Σ_i w_i Q_i over their history, and q_u · v_j scores *any* item j by its text vector alone, so
FAISS inner-product search serves it and places items nobody has rated yet. Items with positives are scored
x_u B_j + α q_u·v_j, the others γ q_u·v_j (α, γ tuned on MovieLens dev; see docs/benchmarks.md).

Dense EASE costs 8·n² bytes per n x n matrix while fitting (about 2.4 GB at 10,000 items, 60 GB at 50,000). Above
`CollabArgs.max_items` items with positives the model is factorised instead: implicit's ALS learns item factors Y
(n x k) and a user's history x_u is folded in by ridge regression, u = (YᵀY + λI)⁻¹ Yᵀ x_u, so B ≈ Y W Yᵀ with
W = (YᵀY + λI)⁻¹ (k x k), and the text map is fitted the same way, Q = B V (VᵀV + μI)⁻¹ = Y M with M = W (YᵀV)
(VᵀV + μI)⁻¹ (k x d). Both stay in factored form (`Factored`): no n x n matrix is ever made, every item is kept.
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

FOLD_IN = 1000.0
MAP_FILE = "collab.npz"
META_FILE = "collab.json"


@dataclass(frozen=True)
class CollabArgs:
    """Hyper-parameters of the collaborative map (tuned on MovieLens dev; stored with each fit)."""

    ease_lambda: float = 250.0  # L2 of EASE; 250 is the usual value for MovieLens-sized data
    ridge_mu: float = 10.0  # L2 of the projection onto the text space
    text_weight: float = 0.5  # α: weight of the text-space score for items that have positives
    new_item_weight: float = 3.0  # γ: weight of the text-space score for items without positives
    max_items: int = 10_000  # largest dense EASE solve (8·n² bytes per matrix); above it, the factorised ALS model
    min_positives: int = 20  # below this many positive pairs no map is fitted (text similarity serves)
    als_factors: int = 128  # k of the factorised model (catalogs above max_items)
    als_iterations: int = 15
    als_regularization: float = 30.0  # L2 of implicit's ALS (its default 0.01 fell below popularity here)
    als_alpha: float = 20.0  # confidence of a positive in ALS (c = 1 + α)
    als_fold_in: float = FOLD_IN  # L2 of the history fold-in u = (YᵀY + λI)⁻¹ Yᵀx (benchmarks/recsys_scale.py)


@dataclass(frozen=True)
class Factored:
    """A matrix kept as `left @ core` (n x m), or `left @ core @ right.T` with `right`: `m[rows]` computes the
    requested rows only, so a 200,000-item catalog never needs an n x n (or n x d) array."""

    left: np.ndarray  # n x k
    core: np.ndarray  # k x m, or k x k with `right`
    right: np.ndarray | None = None  # m x k

    @property
    def shape(self) -> tuple[int, int]:
        return self.left.shape[0], (self.right.shape[0] if self.right is not None else self.core.shape[1])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        out = self.left[rows] @ self.core
        return out @ self.right.T if self.right is not None else out

    def weighted_sum(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """`weights @ self[rows]` without materialising the rows (len(rows) x m)."""
        out = (np.asarray(weights, dtype=self.left.dtype) @ self.left[rows]) @ self.core  # one dtype: BLAS throughout
        return out @ self.right.T if self.right is not None else out

    def row_norms(self, chunk: int = 20_000) -> np.ndarray:
        return np.concatenate([np.linalg.norm(self[np.arange(i, min(i + chunk, self.shape[0]))], axis=1)
                               for i in range(0, self.shape[0], chunk)]) if self.shape[0] else np.zeros(0)


def weighted_rows(matrix: np.ndarray | Factored, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`weights @ matrix[rows]`: a user's collaborative scores from their history rows (dense or factored B)."""
    if isinstance(matrix, Factored):
        return matrix.weighted_sum(rows, weights)
    return weights @ matrix[rows]


@dataclass
class CollabMap:
    """Per-item query vectors `rows` and EASE weights `ease` (items that had positives at fit time), and the
    fallback scale for history items without a row. The factorised model keeps both as `Factored`."""

    item_ids: list[str]
    rows: np.ndarray | Factored
    scale: float
    ease: np.ndarray | Factored | None = None
    args: CollabArgs = field(default_factory=CollabArgs)
    stats: dict = field(default_factory=dict)

    def row_index(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    def save(self, folder: Path) -> None:
        """Write the map beside the index (atomically)."""
        import io

        buffer = io.BytesIO()
        if isinstance(self.rows, Factored):  # the factorised model: Y, W and M (ease = Y W Yᵀ, rows = Y M)
            assert isinstance(self.ease, Factored)
            np.savez(buffer, factors=self.rows.left.astype(np.float32), ease_core=self.ease.core.astype(np.float32),
                     rows_core=self.rows.core.astype(np.float32))
        else:
            np.savez(buffer, rows=self.rows.astype(np.float32),
                     ease=(self.ease if self.ease is not None else np.zeros((0, 0))).astype(np.float32))
        atomic_write_bytes(folder / MAP_FILE, buffer.getvalue())
        meta = {"item_ids": self.item_ids, "scale": self.scale, "args": asdict(self.args), "stats": self.stats,
                "kind": "als" if isinstance(self.rows, Factored) else "ease"}
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
            n = len(meta["item_ids"])
            if meta.get("kind") == "als":
                factors = arrays["factors"]
                rows: np.ndarray | Factored = Factored(factors, arrays["rows_core"])
                ease: np.ndarray | Factored | None = Factored(factors, arrays["ease_core"], factors)
                consistent = factors.shape[0] == n and arrays["ease_core"].shape == (factors.shape[1],) * 2
            else:
                rows = arrays["rows"]
                dense = arrays["ease"] if "ease" in arrays.files else np.zeros((0, 0))  # saved before EASE was kept
                ease = dense if dense.size else None
                consistent = rows.shape[0] == n and dense.shape in ((n, n), (0, 0))
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot read the collaborative map in {folder}: {exc}") from exc
        if not consistent:
            raise Unavailable(f"collaborative map in {folder} is inconsistent")
        return cls(item_ids=meta["item_ids"], rows=rows, scale=float(meta["scale"]), ease=ease,
                   args=CollabArgs(**meta["args"]), stats=meta.get("stats", {}))


def ease_weights(pairs: np.ndarray, n_items: int, lam: float) -> np.ndarray:
    """EASE B (n_items x n_items, zero diagonal) from (user row, item column) positive pairs."""
    x = positive_matrix(pairs, n_items)
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices(n_items)] += lam
    p = np.linalg.inv(gram)
    b = p / (-np.diag(p))
    b[np.diag_indices(n_items)] = 0.0
    return b


def positive_matrix(pairs: np.ndarray, n_items: int):
    """Users x items CSR of (user row, item column) positive pairs, 1 per pair (repeats count once)."""
    from scipy import sparse

    users = np.unique(pairs[:, 0], return_inverse=True)[1]
    x = sparse.csr_matrix((np.ones(len(pairs), dtype=np.float32), (users, pairs[:, 1])),
                          shape=(users.max() + 1, n_items))
    x.data[:] = 1.0
    return x


def als_factors(pairs: np.ndarray, n_items: int, args: CollabArgs) -> np.ndarray:
    """Item factors Y (n_items x k, float64) of implicit's ALS on the positives (CPU, one BLAS thread per solve)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    x = positive_matrix(pairs, n_items)
    with threadpool_limits(1, "blas"):  # implicit parallelises over users/items itself
        model = AlternatingLeastSquares(factors=args.als_factors, regularization=args.als_regularization,
                                        alpha=args.als_alpha, iterations=args.als_iterations, random_state=0)
        model.fit(x, show_progress=log.isEnabledFor(logging.DEBUG))
    return np.asarray(model.item_factors, dtype=np.float64)


def _calibration(x, y: np.ndarray, core: np.ndarray, sample: int = 2000) -> float:
    """c minimising ||x_u - c·s_u||² over a sample of users, s_u = x_u Y W Yᵀ: the fold-in's shrinkage undone, so
    the collaborative scores weigh against the text score (α) as EASE's do."""
    rows = np.random.default_rng(0).choice(x.shape[0], size=min(sample, x.shape[0]), replace=False)
    xs = x[rows]
    s = (xs @ y) @ core @ y.T  # sample x items
    denom = float(np.sum(s * s))
    return float(xs.multiply(s).sum()) / denom if denom > 0 else 1.0


def fit_collab_map(pairs: Iterable[tuple[str, str]], item_ids: Sequence[str], vectors: np.ndarray,
                   args: CollabArgs | None = None) -> CollabMap | None:
    """Fit the map from positive (user, item) pairs and the items' text vectors; None when too few positives.

    Dense EASE up to `args.max_items` items with positives, the factorised ALS model above (every item kept).
    """
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
    column = np.full(len(item_ids), -1, dtype=np.int64)
    column[active] = np.arange(len(active))
    arr[:, 1] = column[arr[:, 1]]
    v = np.asarray(vectors, dtype=np.float64)[active]
    ridge = np.linalg.inv(v.T @ v + args.ridge_mu * np.eye(v.shape[1]))  # (VᵀV + μI)⁻¹, d x d
    if len(active) <= args.max_items:
        kind = "ease"
        b = ease_weights(arr, len(active), args.ease_lambda)
        q: np.ndarray | Factored = (b @ v @ ridge).astype(np.float32)
        ease: np.ndarray | Factored = b.astype(np.float32)
    else:
        kind = "als"
        log.info("%d items have positives, over the dense EASE limit of %d (%.0f GB dense): fitting the factorised "
                 "model (implicit ALS, %d factors) over all of them", len(active), args.max_items,
                 3 * 8 * len(active) ** 2 / 1e9, args.als_factors)
        y = als_factors(arr, len(active), args)
        core = np.linalg.inv(y.T @ y + args.als_fold_in * np.eye(y.shape[1]))
        core *= _calibration(positive_matrix(arr, len(active)), y, core)  # scores in units of x, as EASE's are
        ease = Factored(y.astype(np.float32), core.astype(np.float32), y.astype(np.float32))
        q = Factored(ease.left, (core @ (y.T @ v) @ ridge).astype(np.float32))
    norms = q.row_norms() if isinstance(q, Factored) else np.linalg.norm(q, axis=1)
    scale = float(np.median(norms[norms > 0])) if np.any(norms > 0) else 1.0
    seconds = time.perf_counter() - start
    log.info("collaborative map (%s): %d items, %d users, %d positives in %.1fs", kind, len(active),
             len(user_codes), len(arr), seconds)
    return CollabMap(item_ids=[item_ids[i] for i in active], rows=q, scale=scale, ease=ease, args=args,
                     stats={"model": kind, "items": len(active), "users": len(user_codes), "positives": len(arr),
                            "seconds": round(seconds, 2)})
