"""The collaborative model: EASE weights, the ridge text projection, save/load."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from newsdesk.errors import Unavailable
from recsys.collab import MAP_FILE, CollabArgs, CollabMap, Factored, ease_weights, fit_collab_map, weighted_rows


def _pairs() -> list[tuple[str, str]]:
    # items a0..a3 liked together, b0..b3 liked together; c0 never liked
    pairs = [(f"ua{u}", f"a{(u + i) % 4}") for u in range(8) for i in range(3)]
    return pairs + [(f"ub{u}", f"b{(u + i) % 4}") for u in range(8) for i in range(3)]


def _vectors() -> tuple[list[str], np.ndarray]:
    ids = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)] + ["c0"]
    rng = np.random.default_rng(0)
    v = rng.normal(scale=0.1, size=(9, 8))
    v[:4, 0] += 1.0
    v[4:8, 1] += 1.0
    v[8, 0] += 1.0  # c0 reads like the a items
    return ids, (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_ease_has_zero_diagonal_and_links_co_liked_items() -> None:
    b = ease_weights(np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 2], [2, 3], [3, 2], [3, 3]]), 4, lam=1.0)
    assert np.allclose(np.diag(b), 0.0)
    assert b[0, 1] > 0.1 and abs(b[0, 2]) < 1e-6


def test_fit_places_an_unrated_item_by_its_text(tmp_path: Path) -> None:
    ids, vecs = _vectors()
    cmap = fit_collab_map(_pairs(), ids, vecs, CollabArgs(ease_lambda=1.0, ridge_mu=0.1))
    assert cmap is not None and "c0" not in cmap.item_ids and cmap.ease.shape == (8, 8)
    query = cmap.rows[cmap.row_index()["a0"]]  # a user who liked a0
    scores = vecs @ query
    assert scores[ids.index("c0")] > max(scores[ids.index(f"b{i}")] for i in range(4))
    cmap.save(tmp_path)
    again = CollabMap.load(tmp_path)
    assert again.item_ids == cmap.item_ids and np.allclose(again.ease, cmap.ease)
    assert again.args == cmap.args


def test_too_few_positives_fit_nothing_and_bad_files_raise(tmp_path: Path) -> None:
    ids, vecs = _vectors()
    assert fit_collab_map(_pairs()[:5], ids, vecs) is None
    assert CollabMap.load(tmp_path) is None
    cmap = fit_collab_map(_pairs(), ids, vecs)
    cmap.save(tmp_path)
    (tmp_path / MAP_FILE).write_bytes(b"not numpy")
    with pytest.raises(Unavailable):
        CollabMap.load(tmp_path)


def test_a_catalog_over_the_dense_limit_is_factorised_not_truncated(tmp_path: Path, caplog) -> None:
    ids, vecs = _vectors()
    args = CollabArgs(ease_lambda=1.0, ridge_mu=0.1, max_items=4, als_factors=2, als_iterations=30,
                      als_regularization=0.1, als_alpha=1.0, als_fold_in=0.1)  # sized for 8 items
    with caplog.at_level(logging.INFO, logger="recsys.collab"):
        cmap = fit_collab_map(_pairs(), ids, vecs, args)
    assert cmap.stats["model"] == "als" and sorted(cmap.item_ids) == sorted(ids[:8])  # all 8 items with positives
    assert "over the dense EASE limit of 4" in caplog.text
    assert isinstance(cmap.ease, Factored) and cmap.ease.shape == (8, 8) and cmap.rows.shape == (8, 8)
    r = cmap.row_index()
    history = np.array([r["a0"], r["a1"]])
    scores = weighted_rows(cmap.ease, history, np.ones(2))
    assert np.allclose(scores, np.ones(2) @ cmap.ease[history], atol=1e-5)
    assert min(scores[r["a2"]], scores[r["a3"]]) > max(scores[r[f"b{i}"]] for i in range(4))  # co-liked first
    text = vecs @ cmap.rows[np.array([r["a0"]])][0]  # the text map, fitted the same way, places c0
    assert text[ids.index("c0")] > max(text[ids.index(f"b{i}")] for i in range(4))
    cmap.save(tmp_path)
    again = CollabMap.load(tmp_path)
    assert isinstance(again.ease, Factored) and again.stats["model"] == "als" and again.args == args
    assert np.allclose(again.ease[history], cmap.ease[history])
    assert np.allclose(again.rows[history], cmap.rows[history])
    (tmp_path / "collab.json").write_text((tmp_path / "collab.json").read_text().replace('"a0", ', ""))
    with pytest.raises(Unavailable, match="inconsistent"):
        CollabMap.load(tmp_path)


def test_dense_ease_stays_up_to_the_limit() -> None:
    ids, vecs = _vectors()
    cmap = fit_collab_map(_pairs(), ids, vecs, CollabArgs(max_items=8))
    assert cmap.stats["model"] == "ease" and isinstance(cmap.ease, np.ndarray)
