"""Cold-item dev split, the served-ranking evaluation, the served-metric gate and the collaborative targets."""

from __future__ import annotations

import numpy as np
import pytest
from recsys_fixtures import ITEMS, FakeEncoder

from finetune.args import BehaviourArgs
from finetune.behaviour import ServedRule, TargetData
from newsdesk.errors import InvalidInput
from recsys.offline import Rating, cold_item_split, evaluate_served, memory_snapshot


def _rows() -> tuple[list[Rating], list[Rating]]:
    """Train: 6 energy readers like e0..e5, 6 tech readers like t0..t5; dev: each likes e6/t6 (and e7/t7)."""
    train, dev = [], []
    for u in range(6):
        for i in range(6):
            train.append(Rating(f"oil{u}", f"e{(u + i) % 6}", 5.0, 1000 + i))
            train.append(Rating(f"chip{u}", f"t{(u + i) % 6}", 5.0, 1000 + i))
        dev.append(Rating(f"oil{u}", "e6", 5.0, 2000))
        dev.append(Rating(f"chip{u}", "t6", 5.0, 2000))
        train.append(Rating(f"oil{u}", "e7", 5.0, 1500)) if u < 3 else dev.append(Rating(f"oil{u}", "e7", 4.0, 2001))
    return train, dev


def _snapshot(train: list[Rating]):
    ids = [i for i, *_ in ITEMS]
    texts = [f"{t}. {c}. {d}" for _, t, c, d in ITEMS]
    return memory_snapshot(ids, FakeEncoder().encode(texts), train, titles=[t for _, t, *_ in ITEMS])


def test_cold_item_split_holds_out_described_items_with_every_train_row() -> None:
    train, dev = _rows()
    described = {"e7", "t0", "t1", "w0"}  # w0 has no interaction: never drawn
    split = cold_item_split(train, dev, described, n_items=2, seed=1)
    assert len(split.cold_items) == 2 and split.cold_items <= {"e7", "t0", "t1"}
    assert not any(r.item_id in split.cold_items for r in split.train)
    assert len(split.train) == len(train) - sum(r.item_id in split.cold_items for r in train)
    assert split.dev == dev  # the cold items' dev likes stay: they are the new-item targets
    again = cold_item_split(train, dev, described, n_items=2, seed=1)
    assert again.cold_items == split.cold_items
    draws = {frozenset(cold_item_split(train, dev, described, n_items=2, seed=s).cold_items) for s in range(8)}
    assert len(draws) > 1  # the seed decides which items
    everything = cold_item_split(train, dev, described, n_items=99, seed=0)
    assert everything.cold_items == {"e7", "t0", "t1"}
    summary = everything.summary()
    assert summary["cold_items"] == 3 and summary["dev_cold_item_likes"] == 3  # e7 liked by oil3..oil5 in dev


def test_served_evaluation_places_new_items_by_text() -> None:
    train, dev = _rows()
    split = cold_item_split(train, dev, {"e7"}, n_items=1, seed=0)
    snap = _snapshot(split.train)
    assert not snap.known[snap.position["e7"]] and snap.known[snap.position["e0"]]
    result = evaluate_served(snap, split.train, split.dev, k=3)
    assert result["users"] == 12
    assert result["new_item_users"] == 12  # e6/t6 are never rated in train, e7 is the cold item
    assert result["new_item_hit_rate"] > 0.5  # text places them: energy readers get e6/e7, tech readers t6
    assert 0 < result["recall@3"] <= 1


def test_served_gate_refuses_a_worse_candidate_and_says_why() -> None:
    rule = ServedRule(k=10)
    champion = {"recall@10": 0.130, "new_item_hit_rate": 0.02}
    ok, reason, figures = rule.verdict({"recall@10": 0.120, "new_item_hit_rate": 0.08}, champion)
    assert not ok and "falls more than 1%" in reason and "0.1200" in reason and figures["recall_floor"] == 0.1287
    ok, reason, _ = rule.verdict({"recall@10": 0.131, "new_item_hit_rate": 0.02}, champion)
    assert not ok and "new-item hit rate does not rise" in reason
    ok, reason, _ = rule.verdict({"recall@10": 0.1292, "new_item_hit_rate": 0.05}, champion)
    assert ok and reason.startswith("promoted") and "0.0500 vs 0.0200" in reason
    ok, reason, _ = rule.verdict({"recall@10": 0.1}, champion)
    assert not ok and "no served" in reason


def test_target_data_checks_shapes() -> None:
    TargetData(["a", "b"], np.ones((2, 3)), np.ones((3, 4)))
    with pytest.raises(InvalidInput):
        TargetData(["a", "b"], np.ones((3, 3)))
    with pytest.raises(InvalidInput):
        TargetData(["a", "b"], np.ones((2, 3)), np.ones((4, 4)))


def test_behaviour_args_validate_the_collab_fields() -> None:
    assert BehaviourArgs().objective == "collab"
    with pytest.raises(InvalidInput, match="objective"):
        BehaviourArgs(objective="magic")
    with pytest.raises(InvalidInput, match="freeze_layers"):
        BehaviourArgs(freeze_layers=9)


def test_worse_served_candidate_is_kept_with_the_reason_on_the_version(settings, session) -> None:
    """finish() with the served rule: a candidate whose served recall falls is registered, not promoted, and the
    reason is in its metrics (what the console shows) and in the model events."""
    import json

    from finetune import registry
    from finetune.pipeline import Prepared, finish

    settings.ensure_dirs()
    champion = {"version": "base", "recall@10": 0.13, "new_item_hit_rate": 0.01}
    staged = registry.staging_dir(settings, "recsys", "v1")
    staged.mkdir(parents=True)
    metrics = {"recall@10": 0.11, "new_item_hit_rate": 0.09, "champion": champion}
    rule = ServedRule(k=10, champion_label="base encoder")
    outcome = finish(session, settings, "recsys", "v1", 1, Prepared(staged, metrics, 0.13, "base", {}, 1, 1.0, {},
                                                                    rule=rule), {}, "auto", "test")
    assert not outcome.promoted and "falls more than 1%" in outcome.reason and "base encoder 0.1300" in outcome.reason
    assert outcome.primary_metric == "recall@10" and outcome.primary_value == 0.11
    stored = json.loads((outcome.path / "metrics.json").read_text())
    assert stored["gate"]["promote"] is False and stored["gate"]["reason"] == outcome.reason
    assert registry.current_row(session, "recsys") is None
    staged = registry.staging_dir(settings, "recsys", "v2")
    staged.mkdir(parents=True)
    better = {"recall@10": 0.1295, "new_item_hit_rate": 0.05, "champion": champion}
    outcome = finish(session, settings, "recsys", "v2", 2, Prepared(staged, better, 0.13, "base", {}, 1, 1.0, {},
                                                                    rule=ServedRule()), {}, "auto", "test")
    assert outcome.promoted and registry.current_row(session, "recsys").version == "v2"


def _targets(collab_args, monkeypatch=None):
    from recsys.behaviour import collab_targets

    train, _ = _rows()
    ids = [i for i, *_ in ITEMS]
    texts = [f"{t}. {c}. {d}" for _, t, c, d in ITEMS]
    args = BehaviourArgs(min_item_positives=2)
    return collab_targets(train, ids, texts, FakeEncoder().encode(texts), args, collab_args)


def test_collab_targets_use_dense_ease_up_to_the_size_limit() -> None:
    from recsys.collab import CollabArgs

    data = _targets(CollabArgs())
    assert data.info["model"] == "ease" and data.info["items_with_positives"] == 13  # e0-e7 minus e6, t0-t5
    t = min(13, 16)  # thin QR of the 13 x 16 map: 13-d targets, a 13 x 16 decoder
    assert data.targets.shape == (13, t) and data.decoder.shape == (t, 16)  # every item has >= 2 positives
    assert 0.0 < data.info["target_reachable_share"] <= 1.0 + 1e-6
    assert all(t.startswith(("Oil", "Chip")) for t in data.texts)


def test_collab_targets_switch_to_the_factorised_model_above_the_limit(monkeypatch) -> None:
    """Above `max_items` no n x n EASE matrix is solved: ALS factors give the targets, of the same shape."""
    from recsys import collab
    from recsys.collab import CollabArgs

    def refuse(*_a, **_k):
        raise AssertionError("dense EASE solved above the size limit")

    monkeypatch.setattr(collab, "ease_weights", refuse)
    data = _targets(CollabArgs(max_items=5, als_factors=4, als_iterations=10, als_regularization=0.1,
                               als_alpha=1.0, als_fold_in=1.0))
    assert data.info["model"] == "als" and data.info["items_with_positives"] == 13
    assert data.targets.shape == (13, 13) and data.decoder.shape == (13, 16) and np.isfinite(data.targets).all()
    assert 0.0 < data.info["target_reachable_share"] <= 1.0 + 1e-6
    energy = [n for n, t in enumerate(data.texts) if t.startswith("Oil")]
    tech = [n for n, t in enumerate(data.texts) if t.startswith("Chip")]
    unit = data.targets / np.linalg.norm(data.targets, axis=1, keepdims=True)
    # co-liked items get similar targets: energy items are closer to each other than to tech items
    assert (unit[energy] @ unit[energy].T).mean() > (unit[energy] @ unit[tech].T).mean()


def test_a_new_item_takes_the_slot_only_when_its_text_score_is_close_to_the_best() -> None:
    """An energy reader, every energy item rated: the only new items are about other topics. With no floor the
    best of them (text score about 0) takes the slot from a rated energy item; with the floor it does not."""
    from dataclasses import replace
    from datetime import datetime

    from recsys.profile import Event, build_profile
    from recsys.rank import RankParams, rank_for_profile

    train, _ = _rows()
    snap = _snapshot(train + [Rating("x", "e6", 2.0, 1000)])  # e6 rated (low): no energy item is new
    events = [Event(f"e{i}", "rating", 5.0, datetime(2024, 1, 1, i)) for i in range(4)]
    profile = build_profile(events, snap.position, snap.vectors, snap.collab, half_life=20)
    params = RankParams()
    assert params.new_item_min_ratio == 0.0  # the default: any new item with a positive text score qualifies

    def served(ratio: float) -> list[str]:
        return [s.item_id for s in rank_for_profile(snap, profile, 4, replace(params, new_item_min_ratio=ratio), 0)]

    without = served(0.0)
    assert not snap.known[snap.position[without[-1]]] and not without[-1].startswith("e")  # an unrelated new item
    assert all(i.startswith("e") for i in served(0.75))  # with a floor the rated energy items keep their places
    assert served(0.5) == served(0.9)
