"""Hyper-parameters of each training task: defaulted, validated and saved with every version."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from newsdesk.errors import InvalidInput


@dataclass
class ClassifierArgs:
    """Classifier fine-tune of the base encoder: sentiment, topic, or both in one joint model (defaults: the best
    method measured in the benchmark).

    The default is a full fine-tune with mean pooling + linear head, 3 epochs, the last weights kept (no checkpoint
    picked on dev, so the dev score is not flattered). The peak learning rate is 5e-5 for sentiment (`TopicArgs`
    and `JointArgs` raise it to 1e-4, see there). On PhraseBank dev over ten seeds it averages 0.830 macro-F1
    against 0.813 for the CLS-pooler recipe of `AutoModelForSequenceClassification` (five seeds); weight averaging,
    a soup of seeds, R-Drop and a k-NN memory were measured too, were no better, and are gone from the product
    (their figures stay in docs/benchmarks.md). The dev file only reports and gates. Given labelled text from a
    related source as pretraining files (`--pretrain`, e.g. the
    financial tweets before PhraseBank news), the same recipe first trains on them for `pretrain_epochs` and then
    on the training files from there (intermediate-task transfer): on PhraseBank dev, tweets first raised the mean
    of eight seeds from 0.830 to 0.839 (seven of eight seeds higher; docs/benchmarks.md).

    Attributes:
        epochs: maximum passes over the training data; early stopping on dev may end sooner.
        max_steps: if > 0, stop after this many optimiser steps (overrides `epochs`; for tests and demos).
        learning_rate: peak AdamW learning rate, linear decay after `warmup_ratio` of the steps.
        batch_size: examples per optimiser step.
        max_length: tokens per text (longer texts are truncated).
        pooling: "mean" (mean of token vectors, as the encoder was pre-trained) or "cls" (BERT's CLS pooler, which
            all-MiniLM-L6-v2 never trained: 1.7 points lower in the benchmark).
        class_weights: "balanced" (inverse class frequency in the loss) or "none" (default: in the benchmark the
            balanced run scored 2.4 points lower dev macro-F1; see docs/benchmarks.md).
        label_smoothing: cross-entropy label smoothing.
        warmup_ratio: fraction of steps with a linear warm-up.
        weight_decay: AdamW weight decay.
        early_stopping_patience: evaluations on dev without improvement before stopping (0 = off; picking the
            stopping point on dev flatters the dev score, so the default leaves it off).
        evals_per_epoch: dev evaluations (and checkpoints) per epoch.
        dev_fraction: share of the training rows held out as dev when no dev file is given.
        seed: seed for the data order and dropout (the head always starts from the same initialisation).
        select_best: keep the dev-best evaluation's weights (True) or the last step's (False).
        train_precision: "auto" (bfloat16 mixed precision where the CPU or GPU computes it natively, else float32;
            fp16 on a GPU without bf16), "float32" or "bfloat16".
        pretrain_epochs: epochs of the first stage when pretraining files are given (`--pretrain`: labelled text
            from a related source, learned before the training files; intermediate-task transfer).
        device: "auto" (CUDA with mixed precision when available), "cpu" or "cuda".
        preset: "" or "demo" (a short run for the bundled demo data: at most 2 epochs, 48 tokens).
    """

    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 64
    pooling: str = "mean"
    class_weights: str = "none"
    label_smoothing: float = 0.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    early_stopping_patience: int = 0
    evals_per_epoch: int = 1
    dev_fraction: float = 0.1
    seed: int = 42
    select_best: bool = False
    pretrain_epochs: float = 1.0
    train_precision: str = "auto"
    device: str = "auto"
    preset: str = ""

    def __post_init__(self) -> None:
        if self.preset == "demo":  # one short run on the bundled demo data (2 epochs: ~1 min with bfloat16)
            self.pooling = "mean"
            self.epochs = min(self.epochs, 2.0)
            self.max_length = min(self.max_length, 48)
        self.validate()

    def validate(self) -> None:
        """Raises InvalidInput naming the first bad field."""
        _check(self.epochs > 0, "epochs", "must be > 0")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(8 <= self.max_length <= 512, "max_length", "must be within 8..512")
        _check(self.pooling in ("mean", "cls"), "pooling", "must be mean or cls")
        _check(self.class_weights in ("balanced", "none"), "class_weights", "must be balanced or none")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", "must be within [0, 1)")
        _check(0 < self.dev_fraction < 0.5, "dev_fraction", "must be within (0, 0.5)")
        _check(self.evals_per_epoch >= 1, "evals_per_epoch", "must be >= 1")
        _check(self.pretrain_epochs > 0, "pretrain_epochs", "must be > 0")
        _check(self.train_precision in ("auto", "float32", "bfloat16"), "train_precision",
               "must be auto, float32 or bfloat16")
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        _check(self.preset in ("", "demo"), "preset", "must be '' or demo")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BehaviourArgs:
    """Behaviour fine-tune of the recsys encoder.

    The default objective, "collab", trains each item's TEXT embedding to land where behaviour puts the item: one
    pass over the items with enough positives per epoch, loss 1 - cos(decoder·enc(text), target) with targets and
    decoder from recsys's EASE model (finetune/behaviour.py, recsys/behaviour.py), gated on the served ranking of a
    cold-item dev split. "pairs" is the earlier contrastive fine-tune on items liked in a row (MNRL).

    Attributes:
        objective: "collab" (targets from the collaborative model; the default) or "pairs".
        epochs: passes over the items ("collab") or pairs ("pairs").
        max_steps: if > 0, stop after this many steps (tests, demos).
        learning_rate: peak AdamW learning rate.
        batch_size: items (or pairs) per step.
        mini_batch_size: chunk size of the cached loss ("pairs"; memory only).
        loss: "cached_mnrl" or "mnrl" ("pairs").
        max_length: tokens per item text.
        positive_rating: a rating at or above this is a like (clicks are always likes).
        max_pairs: cap on training pairs ("pairs").
        max_gap: pair a like with each of the next `max_gap` likes of the same user ("pairs").
        k: cut-off of the Recall/NDCG evaluation.
        warmup_ratio: fraction of steps with linear warm-up.
        seed: sampling and training seed.
        min_item_positives: items with at least this many positives are training targets ("collab").
        freeze_layers: lowest transformer layers (and the embeddings) kept frozen ("collab"; 0 = train all).
        cold_items: items with a description held out of training and of the served model's history for the
            gate's dev protocol (their dev likes are the new-item targets).
        cold_seed: which cold items are drawn.
        train_precision: "auto" (bfloat16 where the CPU/GPU computes it natively), "float32" or "bfloat16".
        device: "auto", "cpu" or "cuda".
    """

    objective: str = "collab"
    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 32
    mini_batch_size: int = 32
    loss: str = "cached_mnrl"
    max_length: int = 128
    positive_rating: float = 4.0
    max_pairs: int = 4096
    max_gap: int = 1
    k: int = 10
    warmup_ratio: float = 0.1
    seed: int = 42
    min_item_positives: int = 3
    freeze_layers: int = 0
    cold_items: int = 300
    cold_seed: int = 0
    train_precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises InvalidInput naming the first bad field."""
        _check(self.objective in ("collab", "pairs"), "objective", "must be collab or pairs")
        _check(self.epochs > 0, "epochs", "must be > 0")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.batch_size >= 2, "batch_size", "must be >= 2")
        _check(self.mini_batch_size >= 1, "mini_batch_size", "must be >= 1")
        _check(self.loss in ("cached_mnrl", "mnrl"), "loss", "must be cached_mnrl or mnrl")
        _check(8 <= self.max_length <= 512, "max_length", "must be within 8..512")
        _check(self.max_pairs >= 1, "max_pairs", "must be >= 1")
        _check(self.max_gap >= 1, "max_gap", "must be >= 1")
        _check(self.k >= 1, "k", "must be >= 1")
        _check(self.min_item_positives >= 1, "min_item_positives", "must be >= 1")
        _check(0 <= self.freeze_layers <= 6, "freeze_layers", "must be within 0..6")
        _check(self.cold_items >= 0, "cold_items", "must be >= 0")
        _check(self.train_precision in ("auto", "float32", "bfloat16"), "train_precision",
               "must be auto, float32 or bfloat16")
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TopicArgs(ClassifierArgs):
    """The topic fine-tune: `ClassifierArgs` at a peak learning rate of 1e-4. Side by side on the 20-topic tweets
    (3 epochs, grouped dev split, seeds 42 and 43) 1e-4 averaged 0.8691 dev accuracy and 0.8466 macro-F1 against
    0.8597 and 0.8034 at 5e-5, ahead on both seeds and at every epoch (docs/benchmarks.md)."""

    learning_rate: float = 1e-4


@dataclass
class JointArgs(ClassifierArgs):
    """The joint (sentiment + topic) fine-tune: `ClassifierArgs` with 2 epochs at a peak learning rate of 1e-4 (as
    `TopicArgs`) over the union of both tasks' rows (about 28,000 rows with PhraseBank, the tweets and the topic
    set, so an epoch costs more than twice a two-source sentiment epoch; 2 epochs keep the full run within 30
    minutes on a quiet 2-core CPU)."""

    epochs: float = 2.0
    learning_rate: float = 1e-4


@dataclass
class StudentArgs:
    """A smaller student of a served classifier version (`newsdesk finetune student`), trained on the teacher's
    outputs (finetune/distil.py).

    Defaults: 3 of MiniLM's 6 layers (0, 2, 4), the teacher's soft labels at temperature 2 with half the weight on
    the hard labels where known, 2 epochs at 1e-4 over the labelled rows plus at most 10,000 unlabelled texts.

    Attributes:
        layers: how many of the teacher's layers the student keeps (every other one from the bottom for 3 of 6).
        temperature: softmax temperature of the soft labels (the KL term is scaled by its square).
        alpha: weight of the soft-label term; 1 - alpha goes to the hard labels of rows that have one.
        epochs: passes over the training texts.
        max_steps: if > 0, stop after this many optimiser steps (tests).
        learning_rate: peak AdamW learning rate, linear decay after `warmup_ratio` of the steps.
        batch_size: texts per step.
        max_length: tokens per text (0: the teacher's).
        unlabelled_rows: at most this many unlabelled texts (a seeded sample, each text once).
        warmup_ratio: fraction of steps with a linear warm-up.
        weight_decay: AdamW weight decay.
        seed: sampling, data order and dropout seed.
        train_precision: "auto" (bfloat16 autocast where the CPU/GPU computes it natively), "float32" or "bfloat16";
            the teacher's logits are computed the same way.
        device: "auto", "cpu" or "cuda".
    """

    layers: int = 3
    temperature: float = 2.0
    alpha: float = 0.5
    epochs: float = 2.0
    max_steps: int = -1
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_length: int = 0
    unlabelled_rows: int = 10000
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    train_precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises InvalidInput naming the first bad field."""
        _check(1 <= self.layers <= 24, "layers", "must be within 1..24")
        _check(self.temperature > 0, "temperature", "must be > 0")
        _check(0 <= self.alpha <= 1, "alpha", "must be within [0, 1]")
        _check(self.epochs > 0, "epochs", "must be > 0")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(self.max_length == 0 or 8 <= self.max_length <= 512, "max_length", "must be 0 or within 8..512")
        _check(self.unlabelled_rows >= 0, "unlabelled_rows", "must be >= 0")
        _check(self.train_precision in ("auto", "float32", "bfloat16"), "train_precision",
               "must be auto, float32 or bfloat16")
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SentimentArgs = ClassifierArgs  # the name the sentiment-only code and its tests know
ARGS_CLASSES = {"sentiment": ClassifierArgs, "topic": TopicArgs, "multitask": JointArgs,
                "recsys": BehaviourArgs, "student": StudentArgs}


def build_args(task: str, values: Mapping[str, Any] | None = None
               ) -> ClassifierArgs | BehaviourArgs | StudentArgs:
    """The args dataclass of `task` from a mapping (unknown keys and bad values raise InvalidInput)."""
    if task not in ARGS_CLASSES:
        raise InvalidInput(f"unknown task {task!r} (expected {', '.join(ARGS_CLASSES)})", {"field": "task"})
    cls = ARGS_CLASSES[task]
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInput(f"unknown {task} training argument(s): {', '.join(unknown)}", {"field": unknown[0]})
    for name, value in list(values.items()):
        default = known[name].default
        try:
            if isinstance(default, bool):
                values[name] = bool(value)
            elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
                values[name] = type(default)(value)
            elif isinstance(default, float):
                values[name] = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"training argument {name} has an invalid value {value!r}", {"field": name}) from exc
    return cls(**values)


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise InvalidInput(f"training argument {name} {message}", {"field": name})
