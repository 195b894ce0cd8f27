from __future__ import annotations

import numpy as np
import pytest

from finetune.args import BehaviourArgs, SentimentArgs, build_args
from finetune.evaluate import classification_report, ranking_metrics
from finetune.gate import GateDecision, MarginRule, decide, default_rule
from newsdesk.errors import GateRejected, InvalidInput
from newsdesk.settings import FinetuneSettings


def test_build_args_validates_and_coerces() -> None:
    args = build_args("sentiment", {"epochs": "2", "pooling": "cls"})
    assert isinstance(args, SentimentArgs) and args.epochs == 2.0 and args.pooling == "cls"
    assert isinstance(build_args("recsys", None), BehaviourArgs)
    with pytest.raises(InvalidInput, match="unknown sentiment training argument"):
        build_args("sentiment", {"epoch": 3})
    with pytest.raises(InvalidInput, match="pooling"):
        build_args("sentiment", {"pooling": "max"})
    with pytest.raises(InvalidInput, match="invalid value"):
        build_args("sentiment", {"epochs": "many"})
    with pytest.raises(InvalidInput, match="unknown task"):
        build_args("images", {})


def test_demo_preset_is_short() -> None:
    args = SentimentArgs(preset="demo")
    assert args.epochs <= 2 and args.soup == 1 and args.max_length <= 48 and args.pooling == "mean"


def test_classification_report_known_answer() -> None:
    labels = ("negative", "neutral", "positive")
    gold = ["negative", "neutral", "neutral", "positive", "positive", "neutral"]
    pred = ["negative", "neutral", "positive", "positive", "neutral", "neutral"]
    report = classification_report(gold, pred, labels)
    assert report["accuracy"] == round(4 / 6, 4)
    assert report["per_class"]["neutral"] == {"precision": round(2 / 3, 4), "recall": round(2 / 3, 4),
                                              "f1": round(2 / 3, 4), "support": 3}
    assert report["macro_f1"] == round((1 + 2 / 3 + 0.5) / 3, 4)
    assert report["confusion"]["matrix"] == [[1, 0, 0], [0, 2, 1], [0, 1, 1]]


def test_ranking_metrics_exclude_seen_items() -> None:
    items = ["a", "b", "c", "d"]
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    # "a" is seen, so the ranking is b, d, c: the one relevant item "d" is at rank 2.
    m = ranking_metrics(scores, items, {"u": {"a"}}, {"u": {"d"}}, ["u"], k=2)
    assert m["recall@2"] == 1.0 and m["ndcg@2"] == round(1 / np.log2(3), 4)
    m1 = ranking_metrics(scores, items, {"u": {"a"}}, {"u": {"d"}}, ["u"], k=1)
    assert m1["recall@1"] == 0.0


def test_gate_decisions() -> None:
    cfg = FinetuneSettings(promote_margin=0.005, recsys_promote_margin=0.05)
    sentiment = default_rule("sentiment", cfg)
    assert sentiment.beats(0.85, 0.84) and not sentiment.beats(0.843, 0.84)
    first = decide("sentiment", "auto", {"macro_f1": 0.8}, None, sentiment)
    assert first.promote and first.champion is None and "first" in first.reason
    kept = decide("sentiment", "auto", {"macro_f1": 0.80}, {"macro_f1": 0.84}, sentiment)
    assert not kept.promote and kept.refused and "does not beat" in kept.reason
    assert (kept.metric, kept.candidate, kept.champion, kept.margin) == ("macro_f1", 0.80, 0.84, 0.005)
    with pytest.raises(GateRejected, match="does not beat current 0.8400") as info:
        kept.raise_if_refused()
    assert info.value.exit_code == 5
    forced = decide("sentiment", "force", {"macro_f1": 0.1}, {"macro_f1": 0.9}, sentiment)
    assert forced.promote and not forced.refused
    never = decide("sentiment", "never", {"macro_f1": 0.99}, {"macro_f1": 0.1}, sentiment)
    assert not never.promote and not never.refused  # switched off, not refused: no exit 5
    never.raise_if_refused()
    # recsys: a relative margin (NDCG@10 values are small): 0.0070 vs 0.0035 is +100%, 0.0036 only +3%
    recsys = default_rule("recsys", cfg, champion_label="base encoder")
    won = decide("recsys", "auto", {"ndcg@10": 0.0070}, {"ndcg@10": 0.0035}, recsys)
    assert won.promote and won.reason.endswith("by >= 5%") and "base encoder" in won.reason
    assert not decide("recsys", "auto", {"ndcg@10": 0.0036}, {"ndcg@10": 0.0035}, recsys).promote
    assert not MarginRule("ndcg@10", margin=0.005).beats(0.0070, 0.0035)  # an absolute margin would refuse it
    assert not decide("sentiment", "auto", {}, None, sentiment).promote  # nothing measured
    with pytest.raises(InvalidInput):
        decide("sentiment", "sometimes", {"macro_f1": 0.1}, {"macro_f1": 0.2}, sentiment)


def test_gate_takes_a_task_rule() -> None:
    """A task may bring its own rule, e.g. a joint version that must lose on neither of two metrics."""

    class NeitherWorse:
        def judge(self, task, candidate, champion):
            worse = [m for m in ("a", "b") if champion is not None and candidate[m] < champion[m]]
            return GateDecision(not worse, task, "a", candidate["a"], champion and champion["a"], 0.0,
                                f"kept: worse on {', '.join(worse)}" if worse else "promoted: worse on nothing",
                                details={"worse": worse})

    decision = decide("joint", "auto", {"a": 0.9, "b": 0.5}, {"a": 0.8, "b": 0.6}, NeitherWorse())
    assert not decision.promote and decision.details == {"worse": ["b"]} and decision.reason == "kept: worse on b"
    assert decide("joint", "auto", {"a": 0.9, "b": 0.7}, {"a": 0.8, "b": 0.6}, NeitherWorse()).promote


def test_knn_memory_mixes_head_and_neighbour_vote() -> None:
    import torch

    from finetune.model import KnnMemory

    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    memory = KnnMemory(vectors, torch.tensor([2, 2, 0]), k=2, mix=0.5, temperature=0.05)
    head = torch.tensor([[0.2, 0.6, 0.2]])
    mixed = memory.combine(torch.tensor([[1.0, 0.05]]), head)  # both neighbours say label 2
    assert torch.allclose(mixed, torch.tensor([[0.1, 0.3, 0.6]]), atol=1e-5)
    assert torch.allclose(mixed.sum(1), torch.ones(1))
