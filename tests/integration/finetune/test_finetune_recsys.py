"""A real 2-step behaviour fine-tune on a 20-item catalog; the postgres registry."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from finetune import registry, service
from finetune.pipeline import Prepared, finish
from newsdesk.db import session_scope
from newsdesk.settings import Settings

TOPICS = {"markets": "Stocks rally as central bank signals rate cuts",
          "sport": "Home team wins the championship final",
          "science": "Researchers discover a new exoplanet",
          "cooking": "A quick recipe for tomato pasta"}


def seed_catalog(url: str) -> None:
    """20 items in 4 topics; 8 users who each like 5 items of one topic, in order."""
    start = datetime(2024, 1, 1)
    with session_scope(url) as s:
        for topic, title in TOPICS.items():
            for n in range(5):
                s.execute(text("INSERT INTO items (item_id, title, description, category, tags, text_hash, "
                               "created_at, updated_at) VALUES (:id, :title, :d, :c, '', '', :ts, :ts)"),
                          {"id": f"{topic}-{n}", "title": f"{title} ({n})", "d": f"A story about {topic}.",
                           "c": topic, "ts": start})
        for u in range(8):
            topic = list(TOPICS)[u % 4]
            for n in range(5):
                s.execute(text("INSERT INTO interactions (user_id, item_id, kind, rating, ts, source) "
                               "VALUES (:u, :i, 'rating', 5.0, :ts, 'test')"),
                          {"u": f"user{u}", "i": f"{topic}-{(n + u) % 5}", "ts": start + timedelta(hours=n)})


@pytest.mark.slow
def test_collab_fine_tune_is_gated_on_the_served_ranking(settings: Settings, db_url: str) -> None:
    """The default objective: a few steps on EASE targets, then challenger and base scored on the served ranking
    of the cold-item dev split; the gate's reason is stored with the version."""
    import json

    from recsys.behaviour import behaviour_source

    seed_catalog(db_url)
    outcome = service.retrain(settings, "recsys", args={"max_steps": 3, "batch_size": 4, "max_length": 32,
                                                        "min_item_positives": 1, "learning_rate": 1e-4},
                              behaviour=behaviour_source(settings, None))
    metrics = outcome.metrics
    assert metrics["objective"] == "collab" and metrics["steps"] == 3 and metrics["served"]
    assert outcome.primary_metric == "recall@10"
    assert {"recall@10", "ndcg@10", "new_item_hit_rate"} <= set(metrics["champion"])
    assert metrics["champion"]["version"] == "base" and metrics["target_items"] > 0
    gate = metrics["gate"]
    assert gate["rule"] == "ServedRule" and gate["promote"] == outcome.promoted and gate["reason"] == outcome.reason
    assert "new-item hit rate" in outcome.reason
    stored = json.loads((outcome.path / "metrics.json").read_text())
    assert stored["gate"]["reason"] == outcome.reason  # the console reads it from the version's metrics
    data = json.loads((outcome.path / "data.json").read_text())
    assert data["cold_split"]["cold_items"] == 4  # a fifth of the 20 described items with interactions


def test_collab_objective_needs_the_behaviour_source(settings: Settings, db_url: str) -> None:
    from newsdesk.errors import InvalidInput

    seed_catalog(db_url)
    with pytest.raises(InvalidInput, match="newsdesk finetune recsys"):
        service.retrain(settings, "recsys")


@pytest.mark.slow
def test_behaviour_fine_tune_registers_an_encoder(settings: Settings, db_url: str) -> None:
    seed_catalog(db_url)
    outcome = service.retrain(settings, "recsys", args={"objective": "pairs", "max_steps": 2, "batch_size": 4,
                                                        "mini_batch_size": 2, "max_length": 32}, promote="force")
    assert outcome.promoted and outcome.primary_metric == "ndcg@10"
    assert {"recall@10", "ndcg@10", "champion"} <= set(outcome.metrics)
    assert outcome.metrics["champion"]["version"] == "base"
    with session_scope(db_url) as s:
        version, path = service.encoder_path(s, settings)
    assert version == outcome.version and (path / "modules.json").is_file()
    from newsdesk.encoders import load_sentence_encoder

    vectors = load_sentence_encoder(path, device="cpu", cache=False).encode(["a headline"])
    assert vectors.shape == (1, 384)


def test_recsys_without_catalog_is_a_clear_error(settings: Settings, db_url: str) -> None:
    from newsdesk.errors import InvalidInput
    from recsys.behaviour import behaviour_source

    with pytest.raises(InvalidInput, match="catalog is empty"):
        service.retrain(settings, "recsys", behaviour=behaviour_source(settings, None))


@pytest.mark.postgres
def test_registry_on_postgres(pg_settings: Settings) -> None:
    settings = pg_settings
    for version, value in (("v1", 0.7), ("v2", 0.6), ("v3", 0.9)):
        staged = registry.staging_dir(settings, "sentiment", version)
        staged.mkdir()
        with session_scope(settings.database_url) as s:
            current = registry.current_row(s, "sentiment")
            finish(s, settings, "sentiment", version, 1,
                   Prepared(staged, {"macro_f1": value}, current.primary_value if current else None, "", {}, 1, 1.0,
                            {}), {}, "auto", "test")
    with session_scope(settings.database_url) as s:
        assert [v.version for v in service.list_versions(s, "sentiment") if v.is_current] == ["v3"]
        assert service.rollback(s, settings, "sentiment").version == "v1"
        run_id = service.request_retrain(s, "sentiment", "carol")
    with session_scope(settings.database_url) as s:
        assert service.list_training_runs(s)[0].id == run_id
        assert Path(service.current_version(s, "sentiment").path).name == "v1"


@pytest.mark.slow
def test_index_build_reuses_the_vectors_shipped_with_the_version(settings: Settings, db_url: str) -> None:
    """The collab run embeds the catalog to evaluate the challenger; promoted, `index build` reuses those vectors."""
    from recsys import service as recsys_service
    from recsys.behaviour import behaviour_source
    from recsys.embed import load_vectors

    seed_catalog(db_url)
    outcome = service.retrain(settings, "recsys", args={"max_steps": 1, "batch_size": 4, "max_length": 32,
                                                        "min_item_positives": 1}, promote="force",
                              behaviour=behaviour_source(settings, None))
    assert (outcome.path / "catalog_vectors.npz").is_file()
    with session_scope(db_url) as s:
        status = recsys_service.rebuild_index(s, settings)
        ids, vectors = load_vectors(s, outcome.version)
    assert status.model_version == outcome.version and len(ids) == 20
    import numpy as np

    shipped = np.load(outcome.path / "catalog_vectors.npz")
    assert np.allclose(vectors, shipped["vectors"][np.argsort(shipped["item_ids"])], atol=1e-6)
