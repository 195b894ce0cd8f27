from __future__ import annotations

import numpy as np
import pytest

from finetune.args import BehaviourArgs, SentimentArgs, build_args
from finetune.evaluate import classification_report, is_better, ranking_metrics
from finetune.registry import decide
from newsdesk.errors import InvalidInput


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
    assert is_better("sentiment", 0.85, 0.84, 0.005)
    assert not is_better("sentiment", 0.843, 0.84, 0.005)
    assert decide("sentiment", "auto", 0.8, None, 0.01)[0]
    promoted, reason = decide("sentiment", "auto", 0.80, 0.84, 0.005)
    assert not promoted and "does not beat" in reason
    assert decide("sentiment", "force", 0.1, 0.9, 0.0)[0]
    # recsys: a relative margin (NDCG@10 values are small): 0.0070 vs 0.0035 is +100%, 0.0036 only +3%
    promoted, reason = decide("recsys", "auto", 0.0070, 0.0035, 0.05, relative=True)
    assert promoted and reason.endswith("by >= 5%")
    assert not decide("recsys", "auto", 0.0036, 0.0035, 0.05, relative=True)[0]
    assert not is_better("recsys", 0.0070, 0.0035, 0.005)  # the absolute sentiment margin would refuse it
    assert not decide("sentiment", "never", 0.99, 0.1, 0.0)[0]
    with pytest.raises(InvalidInput):
        decide("sentiment", "sometimes", 0.1, 0.2, 0.0)


def test_knn_memory_mixes_head_and_neighbour_vote() -> None:
    import torch

    from finetune.model import KnnMemory

    vectors = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=-1)
    memory = KnnMemory(vectors, torch.tensor([2, 2, 0]), k=2, mix=0.5, temperature=0.05)
    head = torch.tensor([[0.2, 0.6, 0.2]])
    mixed = memory.combine(torch.tensor([[1.0, 0.05]]), head)  # both neighbours say label 2
    assert torch.allclose(mixed, torch.tensor([[0.1, 0.3, 0.6]]), atol=1e-5)
    assert torch.allclose(mixed.sum(1), torch.ones(1))
