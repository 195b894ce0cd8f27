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
    assert args.epochs <= 2 and args.max_length <= 48 and args.pooling == "mean"


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


def test_joint_loss_scores_each_row_under_its_own_head() -> None:
    import torch
    from torch.nn import functional as F
    from transformers import BertConfig, BertModel

    from finetune.model import ClassifierModel

    body = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16))
    model = ClassifierModel(body, {"sentiment": ("negative", "neutral", "positive"), "topic": ("Earnings", "IPO")},
                            dropout=0.0).eval()
    assert model.offsets == {"sentiment": 0, "topic": 3} and model.num_labels == 5
    assert model.global_id("topic", "IPO") == 4 and model.global_id("sentiment", "neutral") == 1
    ids, mask = torch.randint(0, 50, (4, 6)), torch.ones(4, 6, dtype=torch.long)
    labels = torch.tensor([2, 3, 0, 4])  # sentiment positive, topic Earnings, sentiment negative, topic IPO
    out = model(ids, mask, labels=labels)
    parts = model.split(out["logits"])
    assert parts["sentiment"].shape == (4, 3) and parts["topic"].shape == (4, 2)
    expected = (F.cross_entropy(parts["sentiment"][[0, 2]], torch.tensor([2, 0]), reduction="sum")
                + F.cross_entropy(parts["topic"][[1, 3]], torch.tensor([0, 1]), reduction="sum")) / 4
    assert torch.allclose(out["loss"], expected, atol=1e-5)
    only_sentiment = model(ids[[0, 2]], mask[[0, 2]], labels=torch.tensor([2, 0]))["loss"]
    assert torch.allclose(only_sentiment, F.cross_entropy(parts["sentiment"][[0, 2]], torch.tensor([2, 0])),
                          atol=1e-5)


def test_joint_gate_promotes_only_when_it_loses_on_neither_task() -> None:
    from finetune import gate

    rule = gate.JointRule(("sentiment", "topic"))

    def joint(mode: str, scores: dict) -> gate.GateDecision:
        candidate = {t: {"macro_f1": c} for t, (c, _) in scores.items()}
        champion = {t: ({"macro_f1": b} if b is not None else None) for t, (_, b) in scores.items()}
        return gate.decide("multitask", mode, candidate, champion, rule)

    ok = joint("auto", {"sentiment": (0.84, 0.83), "topic": (0.80, 0.80)})
    assert ok.promote and "loses on neither" in ok.reason and not ok.refused
    lost = joint("auto", {"sentiment": (0.85, 0.83), "topic": (0.79, 0.80)})
    assert not lost.promote and lost.refused and "loses on topic (" in lost.reason
    assert "topic macro_f1 0.7900 vs current 0.8000" in lost.reason
    assert lost.details["tasks"]["topic"] == {"metric": "macro_f1", "candidate": 0.79, "champion": 0.80}
    with pytest.raises(GateRejected, match="loses on topic"):
        lost.raise_if_refused()
    assert joint("auto", {"sentiment": (0.70, None), "topic": (0.60, None)}).promote  # first models
    assert joint("force", {"sentiment": (0.1, 0.9), "topic": (0.1, 0.9)}).promote
    assert not joint("never", {"sentiment": (0.9, 0.1), "topic": (0.9, 0.1)}).promote
    assert not joint("auto", {"sentiment": (None, 0.8), "topic": (0.9, 0.1)}).promote
    with pytest.raises(InvalidInput, match="promote"):
        joint("sometimes", {})


def test_weighted_f1_weighs_classes_by_support() -> None:
    report = classification_report(["a", "a", "a", "b"], ["a", "a", "a", "a"], ("a", "b"))
    assert report["macro_f1"] == pytest.approx((6 / 7 + 0) / 2, abs=1e-3)
    assert report["weighted_f1"] == pytest.approx(3 * (6 / 7) / 4, abs=1e-3)


def test_joint_args_default_to_two_epochs_and_the_demo_slices_fit_a_joint_run() -> None:
    from pathlib import Path

    from finetune.args import JointArgs
    from finetune.data import read_labelled

    assert isinstance(build_args("multitask", {}), JointArgs) and build_args("multitask", {}).epochs == 2.0
    assert build_args("multitask", {"preset": "demo"}).epochs <= 2 and build_args("topic", {}).epochs == 3.0
    demo = Path(__file__).resolve().parents[3] / "newsdesk" / "demo"
    train = read_labelled([demo / "topic_train.csv"], None)
    labels = tuple(sorted({r.label for r in train}))
    assert len(labels) == 20 and len(train) <= 500  # every topic, and small enough for a quick demo run
    dev = read_labelled([demo / "topic_dev.csv"], labels)  # raises on a dev label the training slice lacks
    assert {r.label for r in dev} == set(labels)
    assert not {r.text for r in train} & {r.text for r in dev}
