"""Ranking known answers on a synthetic two-topic catalog: topic-first, seen items excluded, reasons, cold start."""

from __future__ import annotations

import numpy as np
import pytest

from newsdesk.errors import InvalidInput, Unavailable
from recsys import service
from recsys.profile import Event, interest_clusters
from recsys.rank import mmr


def _topic(item_id: str) -> str:
    return item_id[0]


def test_energy_reader_gets_energy_first(built) -> None:
    settings, session = built
    recs = service.recommend_for_user(session, settings, "oil0", k=4)
    assert [_topic(r.item_id) for r in recs[:2]] == ["e", "e"]
    assert sum(_topic(r.item_id) == "e" for r in recs) >= 2


def test_the_factorised_model_gives_the_same_known_answers(built, fake_encoder) -> None:
    from recsys.collab import CollabArgs, CollabMap

    settings, session = built
    status = service.rebuild_index(session, settings, encoder=fake_encoder,
                                   collab_args=CollabArgs(max_items=3, als_factors=4, als_iterations=30,
                                                          als_regularization=0.1, als_alpha=1.0, als_fold_in=1.0))
    cmap = CollabMap.load(settings.indexes_dir / status.model_version)
    assert cmap.stats["model"] == "als" and status.collab_items == cmap.stats["items"] > 3  # none dropped
    energy = service.recommend_for_user(session, settings, "oil0", k=4)
    assert [_topic(r.item_id) for r in energy[:2]] == ["e", "e"]
    tech = service.recommend_for_user(session, settings, "chip0", k=2)
    assert _topic(tech[0].item_id) == "t"


def test_seen_and_not_interested_items_are_excluded(built) -> None:
    settings, session = built
    seen = {f"e{i}" for i in range(6)} | {"b0"}
    service.log_events(session, "oil0", [("e6", "not_interested")])
    recs = service.recommend_for_user(session, settings, "oil0", k=10)
    assert not ({r.item_id for r in recs} & (seen | {"e6"}))


def test_never_rated_item_is_placed_by_its_text(built) -> None:
    settings, session = built
    # e6 and e7 have no interactions: only their text can place them, and the energy reader should see them
    recs = service.recommend_for_user(session, settings, "oil0", k=3)
    assert {"e6", "e7"} & {r.item_id for r in recs}


def test_reason_names_the_most_related_history_item(built) -> None:
    settings, session = built
    recs = service.recommend_for_user(session, settings, "chip0", k=3)
    top = recs[0]
    assert top.item_id.startswith("t")
    assert top.reason_item_id is not None and top.reason_item_id.startswith("t")
    assert top.reason.startswith("because you liked \u201cChip maker news")


def test_two_topic_reader_gets_both_topics(built) -> None:
    settings, session = built
    events = [("e0", "click"), ("e1", "click"), ("e2", "click"), ("e3", "click"), ("t0", "click"),
              ("t1", "click"), ("t2", "click")]
    service.log_events(session, "both", events)
    recs = service.recommend_for_user(session, settings, "both", k=4)
    assert {_topic(r.item_id) for r in recs} >= {"e", "t"}


def test_cold_start_topics_then_trending(built) -> None:
    settings, session = built
    recs = service.recommend_for_user(session, settings, "newbie", k=3, topics=["weather"])
    assert recs[0].item_id.startswith("w") and "weather" in recs[0].reason
    trending = service.recommend_for_user(session, settings, "newbie", k=3)
    assert len(trending) == 3 and all(r.reason for r in trending)
    assert all(not r.item_id.startswith("w") for r in trending)  # nobody read weather: not trending/popular


def test_recommendations_carry_item_fields(built) -> None:
    settings, session = built
    rec = service.recommend_for_user(session, settings, "oil0", k=1)[0]
    assert rec.title and rec.url.startswith("https://example.com/") and rec.published_at is not None
    assert rec.to_dict()["published_at"].endswith("Z")


def test_bad_k(built) -> None:
    settings, session = built
    with pytest.raises(InvalidInput):
        service.recommend_for_user(session, settings, "oil0", k=0)


def test_no_vectors_is_unavailable(settings, session, catalog_file) -> None:
    service.import_catalog(session, [catalog_file])
    session.commit()
    with pytest.raises(Unavailable):
        service.recommend_for_user(session, settings, "oil0")


def test_lost_index_is_rebuilt_from_stored_vectors(built) -> None:
    import shutil

    from recsys import jobs

    settings, session = built
    shutil.rmtree((settings.indexes_dir / "base").resolve())
    service.get_recommender(settings).invalidate()
    # the request is served from an index built in memory; it writes nothing, the worker job publishes
    assert service.recommend_for_user(session, settings, "oil0", k=1)[0].item_id.startswith("e")
    assert service.index_status(session, settings).indexed == 0
    session.commit()
    assert jobs.refresh_index(settings) == "rebuilt"
    assert service.index_status(session, settings).indexed == 20


def test_mmr_trades_relevance_for_diversity() -> None:
    vecs = np.array([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = vecs @ vecs.T
    relevance = np.array([1.0, 0.95, 0.6])
    assert mmr(relevance, sims, 2, 1.0) == [0, 1]
    assert mmr(relevance, sims, 2, 0.5) == [0, 2]
    with pytest.raises(InvalidInput):
        mmr(relevance, sims, 2, 1.5)


def test_interest_clusters_split_distinct_topics_only() -> None:
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0, 0]) + rng.normal(scale=0.05, size=(5, 3))
    b = np.array([0, 1.0, 0]) + rng.normal(scale=0.05, size=(5, 3))
    both = np.vstack([a, b])
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    labels = interest_clusters(both)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
    one = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert set(interest_clusters(one)) == {0}


def test_recommender_answers_from_events_without_database(built) -> None:
    settings, _ = built
    rec = service.get_recommender(settings)
    out = rec.recommend_events([Event("t0", "click"), Event("t1", "click")], 3)
    assert out[0].item_id.startswith("t")
    scores = rec.score_items([Event("t0", "click")], ["t3", "e3", "missing"])
    assert scores[0] > scores[1] and scores[2] == -np.inf


def test_promotion_keeps_old_snapshot_until_new_version_is_indexed(built, fake_encoder, monkeypatch) -> None:
    from pathlib import Path

    from recsys import recommender

    settings, session = built
    rec = service.get_recommender(settings)
    assert rec.snapshot(session).model_version == "base"
    def promoted(*_a, **_k) -> tuple[str, Path]:
        return "v2", Path("/nonexistent")

    monkeypatch.setattr(recommender, "encoder_version", promoted)
    monkeypatch.setattr(service, "encoder_version", promoted)
    rec._checked = 0.0
    assert service.index_status(session, settings).stale == 20  # every vector is from the old version
    assert service.recommend_for_user(session, settings, "oil0", k=2)[0].item_id.startswith("e")
    assert rec.snapshot(session).model_version == "base"
    service.rebuild_index(session, settings, encoder=fake_encoder)
    assert rec.snapshot(session).model_version == "v2"
    assert service.index_status(session, settings).stale == 0



def _slot_snapshot():
    from recsys.profile import CollabRows
    from recsys.rank import Snapshot

    n = 6  # items 0-3 have feedback (0-2 positives, 3 only a low rating), 4 and 5 are new
    return Snapshot(model_version="v", item_ids=[f"i{p}" for p in range(n)], position={f"i{p}": p for p in range(n)},
                    vectors=np.eye(n, dtype=np.float32), titles=[""] * n, categories=[""] * n, tags=[""] * n,
                    published=np.full(n, np.nan), popularity=np.zeros(n), trending=np.zeros(n), index=None,
                    collab=CollabRows(row_of=np.array([0, 1, 2, -1, -1, -1]), rows=np.zeros((3, 2)), scale=1.0),
                    known=np.array([True, True, True, True, False, False]))


@pytest.mark.parametrize(("slots", "picked", "expected"), [
    (1, [0, 1, 2], [0, 1, 5]),  # the best new candidate takes the last place
    (1, [0, 1, 3], [0, 1, 5]),  # an item with only a low rating is not new: it makes room too
    (2, [0, 1, 2], [0, 5, 4]),  # two slots: the two lowest-placed rated items make room, best new first
    (1, [0, 4, 2], [0, 4, 2]),  # a new item that won a place on relevance fills the slot already
    (3, [0, 1], [5, 4]),  # never more than the candidates there are
])
def test_new_item_slots_give_new_items_the_last_places(slots, picked, expected) -> None:
    from dataclasses import replace

    from recsys.rank import RankParams, _new_item_slots

    snap = _slot_snapshot()
    params = replace(RankParams(), new_item_slots=slots, popularity_weight=0.0, freshness_weight=0.0)
    scores = np.linspace(3, 1, len(picked))
    out, out_scores = _new_item_slots(snap, np.array([4, 5]), np.array([0.2, 0.5]), np.array(picked), scores,
                                      params, now=0.0)
    assert out.tolist() == expected and len(out_scores) == len(out)
    assert _new_item_slots(snap, np.array([], dtype=np.int64), np.array([]), np.array(picked), scores, params,
                           now=0.0)[0].tolist() == picked
