"""Hyper-parameters of each training task: defaulted, validated and saved with every version."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from newsdesk.errors import InvalidInput


@dataclass
class SentimentArgs:
    """Sentiment fine-tune of the base encoder (defaults: the best configuration measured in the benchmark).

    The default is a full fine-tune (CLS pooler + linear head, 4 epochs, best dev epoch kept) whose served
    prediction mixes the head's probabilities 50/50 with a 10-nearest-neighbour vote over the training rows'
    fine-tuned vectors (`knn_mix=0.5`): on PhraseBank dev 0.844 macro-F1 vs 0.827 for the same model's head alone.

    Attributes:
        epochs: maximum passes over the training data; early stopping on dev may end sooner.
        max_steps: if > 0, stop after this many optimiser steps (overrides `epochs`; for tests and demos).
        learning_rate: peak AdamW learning rate, linear decay after `warmup_ratio` of the steps.
        batch_size: examples per optimiser step.
        max_length: tokens per text (longer texts are truncated).
        pooling: "mean" (mean of token vectors, as the encoder was pre-trained) or "cls" (BERT's CLS pooler).
        weight_averaging: start of uniform weight averaging as a fraction of training (0 = off); the served
            model is the average of snapshots taken every `average_every` steps from there on.
        average_every: optimiser steps between two averaged snapshots.
        rdrop_alpha: weight of the R-Drop consistency loss (0 = off; doubles the cost of a step).
        class_weights: "balanced" (inverse class frequency in the loss) or "none" (default: in the benchmark the
            balanced run scored 2.4 points lower dev macro-F1; see docs/benchmarks.md).
        label_smoothing: cross-entropy label smoothing.
        warmup_ratio: fraction of steps with a linear warm-up.
        weight_decay: AdamW weight decay.
        knn_mix: weight of the head when mixed with a k-NN vote over the training rows' vectors (1 = head only);
            below 1 the model folder stores the pooled training vectors.
        knn_k: neighbours in the vote.
        early_stopping_patience: evaluations on dev without improvement before stopping (0 = off).
        evals_per_epoch: dev evaluations (and checkpoints) per epoch.
        dev_fraction: share of the training rows held out as dev when no dev file is given.
        seed: seed for the data order, dropout and the head's initialisation.
        select_best: keep the dev-best evaluation's weights (True) or the last step's (False).
        device: "auto" (CUDA with mixed precision when available), "cpu" or "cuda".
        preset: "" or "demo" (a short run for the bundled demo data; sets epochs/max_steps).
    """

    epochs: float = 4.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 64
    pooling: str = "cls"
    weight_averaging: float = 0.0
    average_every: int = 10
    rdrop_alpha: float = 0.0
    class_weights: str = "none"
    label_smoothing: float = 0.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    knn_mix: float = 0.5
    knn_k: int = 10
    early_stopping_patience: int = 2
    evals_per_epoch: int = 1
    dev_fraction: float = 0.1
    seed: int = 42
    select_best: bool = True
    device: str = "auto"
    preset: str = ""

    def __post_init__(self) -> None:
        if self.preset == "demo":  # mean pooling learns much faster than the untrained CLS pooler in few steps
            self.pooling = "mean"
            self.epochs = min(self.epochs, 1.0)
            self.max_steps = self.max_steps if self.max_steps > 0 else 60
            self.max_length = min(self.max_length, 48)
        self.validate()

    def validate(self) -> None:
        """Raises InvalidInput naming the first bad field."""
        _check(self.epochs > 0, "epochs", "must be > 0")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.batch_size >= 1, "batch_size", "must be >= 1")
        _check(8 <= self.max_length <= 512, "max_length", "must be within 8..512")
        _check(self.pooling in ("mean", "cls"), "pooling", "must be mean or cls")
        _check(0 <= self.weight_averaging < 1, "weight_averaging", "must be within [0, 1)")
        _check(self.average_every >= 1, "average_every", "must be >= 1")
        _check(self.rdrop_alpha >= 0, "rdrop_alpha", "must be >= 0")
        _check(self.class_weights in ("balanced", "none"), "class_weights", "must be balanced or none")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", "must be within [0, 1)")
        _check(0 < self.knn_mix <= 1, "knn_mix", "must be within (0, 1]")
        _check(self.knn_k >= 1, "knn_k", "must be >= 1")
        _check(0 < self.dev_fraction < 0.5, "dev_fraction", "must be within (0, 0.5)")
        _check(self.evals_per_epoch >= 1, "evals_per_epoch", "must be >= 1")
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        _check(self.preset in ("", "demo"), "preset", "must be '' or demo")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class BehaviourArgs:
    """Behaviour fine-tune of the encoder on pairs of items liked in a row by the same user.

    Attributes:
        epochs: passes over the pairs.
        max_steps: if > 0, stop after this many steps (tests, demos).
        learning_rate: peak AdamW learning rate.
        batch_size: pairs per step; every other pair in the batch is a negative (in-batch negatives).
        mini_batch_size: chunk size of the cached loss (memory only; the result equals one big batch).
        loss: "cached_mnrl" (CachedMultipleNegativesRankingLoss) or "mnrl".
        max_length: tokens per item text.
        positive_rating: a rating at or above this is a like (clicks are always likes).
        max_pairs: cap on training pairs (sampled with `seed`).
        max_gap: pair a like with each of the next `max_gap` likes of the same user.
        k: cut-off of the Recall/NDCG evaluation.
        warmup_ratio: fraction of steps with linear warm-up.
        seed: sampling and training seed.
        device: "auto", "cpu" or "cuda".
    """

    epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 3e-5
    batch_size: int = 64
    mini_batch_size: int = 32
    loss: str = "cached_mnrl"
    max_length: int = 128
    positive_rating: float = 4.0
    max_pairs: int = 4096
    max_gap: int = 1
    k: int = 10
    warmup_ratio: float = 0.1
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises InvalidInput naming the first bad field."""
        _check(self.epochs > 0, "epochs", "must be > 0")
        _check(self.learning_rate > 0, "learning_rate", "must be > 0")
        _check(self.batch_size >= 2, "batch_size", "must be >= 2 (in-batch negatives)")
        _check(self.mini_batch_size >= 1, "mini_batch_size", "must be >= 1")
        _check(self.loss in ("cached_mnrl", "mnrl"), "loss", "must be cached_mnrl or mnrl")
        _check(8 <= self.max_length <= 512, "max_length", "must be within 8..512")
        _check(self.max_pairs >= 1, "max_pairs", "must be >= 1")
        _check(self.max_gap >= 1, "max_gap", "must be >= 1")
        _check(self.k >= 1, "k", "must be >= 1")
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ARGS_CLASSES = {"sentiment": SentimentArgs, "recsys": BehaviourArgs}


def build_args(task: str, values: Mapping[str, Any] | None = None) -> SentimentArgs | BehaviourArgs:
    """The args dataclass of `task` from a mapping (unknown keys and bad values raise InvalidInput)."""
    if task not in ARGS_CLASSES:
        raise InvalidInput(f"unknown task {task!r} (expected sentiment or recsys)", {"field": "task"})
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
