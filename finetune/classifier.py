"""Loads classifier versions and labels batches of texts per task; `ClassifierHandle` follows promotions live."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finetune.inference import TorchClassifierEngine
from finetune.model import load_classifier_model
from finetune.serving import select_classifier_path
from newsdesk.device import native_bf16, resolve_device
from newsdesk.errors import InvalidInput, Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str
    scores: dict[str, float]


def _predictions(labels: Sequence[str], probs: torch.Tensor) -> list[Prediction]:
    preds = []
    for row in probs.tolist():
        scores = {label: round(p, 6) for label, p in zip(labels, row, strict=True)}
        preds.append(Prediction(max(scores, key=scores.get), scores))
    return preds


class TextClassifier:
    """A loaded classifier version with one head per task (sentiment, topic, or both from one encoder pass).

    `predict(texts)` returns one sentiment `Prediction` per text, in order (the task of a single-task model without
    a sentiment head, such as a topic model); `predict_tasks(texts)` returns every head's prediction per text.
    """

    def __init__(self, folder: str | Path, *, version: str = "", device: str = "cpu",
                 precision: str = "float32") -> None:
        folder = Path(folder)
        try:
            self.model, self.tokenizer, meta = load_classifier_model(folder, resolve_device(device))
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot load classifier model from {folder}: {exc}") from exc
        self.folder = folder
        self.version = version or folder.name
        self.task_labels: dict[str, tuple[str, ...]] = dict(self.model.tasks)
        self.tasks: tuple[str, ...] = tuple(self.task_labels)
        self.main_task = "sentiment" if "sentiment" in self.task_labels else self.tasks[0]
        self.labels: tuple[str, ...] = self.task_labels[self.main_task]
        self.max_length = int(meta.get("max_length", 128))
        self.device = next(self.model.parameters()).device
        self.dtype = inference_dtype(precision, self.device)
        self.precision = str(self.dtype).removeprefix("torch.") if self.dtype else "float32"
        self.engine: Any = TorchClassifierEngine(self.model, self.tokenizer, self.max_length, self.dtype)

    @property
    def path(self) -> str:
        """The inference path that serves: torch-float32, torch-bfloat16, onnx-float32, onnx-int8[-pc][-rr], cuda-…"""
        return self.engine.name

    def use(self, engine: Any) -> None:
        """Serve with `engine` (an object with `name` and `probs(texts, tasks, batch_size)`), chosen at load."""
        self.engine = engine

    def labels_of(self, task: str) -> tuple[str, ...]:
        """The labels of `task`'s head. Raises InvalidInput when this model has no such head."""
        if task not in self.task_labels:
            raise InvalidInput(f"model {self.version} has no {task} head (it predicts {', '.join(self.tasks)})",
                               {"field": "task"})
        return self.task_labels[task]

    def predict_probs(self, texts: Sequence[str], tasks: Sequence[str] | None = None,
                      batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Task -> (len(texts), labels) class probabilities, every requested head from one encoder pass."""
        for task in tasks or ():
            self.labels_of(task)
        return self.engine.probs(list(texts), tasks, batch_size)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), len(labels)) class probabilities of the main task (sentiment where there is a head)."""
        return self.predict_probs(texts, [self.main_task], batch_size)[self.main_task]

    def predict(self, texts: Sequence[str], batch_size: int = 64, task: str | None = None) -> list[Prediction]:
        """One prediction per text, in input order: the most probable label and every label's probability."""
        task = task or self.main_task
        return _predictions(self.labels_of(task), self.predict_probs(texts, [task], batch_size)[task])

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Prediction]]:
        """Per text, task -> prediction, for every head of this model, from one encoder pass."""
        probs = self.predict_probs(texts, None, batch_size)
        per_task = {task: _predictions(self.task_labels[task], p) for task, p in probs.items()}
        return [{task: per_task[task][i] for task in self.tasks} for i in range(len(texts))]


SentimentClassifier = TextClassifier  # the name the monitor and web code (and their fakes) know


class ServedClassifier:
    """What the stream classifies with: the current version of each task, sentiment always, topic when one is
    current. Tasks whose current versions are one joint model come from one encoder pass; a topic version in a
    folder of its own costs a second pass.
    """

    def __init__(self, parts: dict[str, TextClassifier]) -> None:
        if "sentiment" not in parts:
            raise ValueError("a served classifier needs a sentiment model")
        self.parts = parts
        self.tasks: tuple[str, ...] = tuple(parts)
        sentiment = parts["sentiment"]
        self.version, self.labels, self.precision = sentiment.version, sentiment.labels, sentiment.precision
        self.versions = {task: clf.version for task, clf in parts.items()}

    @property
    def path(self) -> str:
        """Which inference path serves: one name ("onnx-int8"), or one per task when they differ."""
        paths = {task: clf.path for task, clf in self.parts.items()}
        if len(set(paths.values())) == 1:
            return next(iter(paths.values()))
        return ", ".join(f"{task}={path}" for task, path in paths.items())

    @property
    def passes(self) -> int:
        """Encoder passes per batch (1 when every served task comes from one model)."""
        return len({id(clf) for clf in self.parts.values()})

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        """Sentiment only, one per text, in order."""
        return self.parts["sentiment"].predict(texts, batch_size, task="sentiment")

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Prediction]]:
        """Per text, task -> prediction ("sentiment" always, "topic" when served), one pass per distinct model."""
        out: list[dict[str, Prediction]] = [{} for _ in texts]
        by_model: dict[int, tuple[TextClassifier, list[str]]] = {}
        for task, clf in self.parts.items():
            by_model.setdefault(id(clf), (clf, []))[1].append(task)
        for clf, tasks in by_model.values():
            probs = clf.predict_probs(texts, tasks, batch_size)
            for task in tasks:
                for i, pred in enumerate(_predictions(clf.task_labels[task], probs[task])):
                    out[i][task] = pred
        return [{task: row[task] for task in self.tasks} for row in out]


PRECISIONS = ("auto", "float32", "bfloat16")


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for inference (None: plain float32).

    "auto" takes bfloat16 where the hardware computes it natively (CUDA with bf16; a CPU with AVX512-BF16 or AMX:
    x2.3 faster than float32 on this machine's CPU in the monitor benchmark, labels 99.9% identical) and float32
    elsewhere (emulated bfloat16 would be slower).

    Raises:
        InvalidInput: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise InvalidInput(f"inference precision must be one of {', '.join(PRECISIONS)}, got {precision!r}",
                           {"key": "finetune.inference_precision"})
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if native_bf16(device.type) else None


def load_served(settings: Settings, folder: str | Path, version: str) -> TextClassifier:
    """A classifier version on the inference path chosen for this machine (`finetune.inference_path`).

    Raises:
        Unavailable: the folder does not hold a loadable model.  InvalidInput: an unknown path or precision.
    """
    clf = TextClassifier(folder, version=version, device=settings.device,
                         precision=settings.finetune.inference_precision)
    select_classifier_path(clf, settings.home, settings.finetune.inference_path,
                           settings.finetune.inference_tolerance)
    return clf


class ClassifierHandle:
    """The current sentiment version (and topic version, if any), re-checked in the database at most every
    `refresh_s` seconds.

    `get()` swaps in a newly promoted (or rolled-back-to) version without a restart. When the current topic
    version is the current sentiment version (a joint model), both come from one loaded model and one pass.
    """

    def __init__(self, settings: Settings, refresh_s: float = 5.0) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._served: ServedClassifier | None = None
        self._target: tuple[tuple[str, str, str], ...] = ()
        self._checked = 0.0

    def get(self) -> ServedClassifier:
        """The served classifier of the current versions.

        Raises:
            Unavailable: no sentiment version is current (or it cannot be loaded).
        """
        with self._lock:
            now = time.monotonic()
            if self._served is None or now - self._checked >= self.refresh_s:
                self._checked = now
                self._refresh()
            if self._served is None:
                raise Unavailable("no sentiment model is in service yet: run `newsdesk finetune sentiment`")
            return self._served

    def _refresh(self) -> None:
        from finetune.registry import current_row
        from finetune.store import local_folder
        from newsdesk.db import session_scope

        with session_scope(self.settings.database_url) as session:
            rows = {task: current_row(session, task) for task in ("sentiment", "topic")}
            target = tuple((task, row.version, str(Path(row.path))) for task, row in rows.items() if row is not None)
        if not any(task == "sentiment" for task, _, _ in target):
            self._served, self._target = None, ()
            return
        if self._served is not None and target == self._target:
            return
        # recorded path -> model, so a joint model is loaded once and an unchanged model is not loaded again
        loaded = ({path: self._served.parts[task] for task, _, path in self._target if task in self._served.parts}
                  if self._served else {})
        parts: dict[str, TextClassifier] = {}
        for task, version, path in target:
            if path not in loaded or loaded[path].version != version:
                log.info("loading %s model %s", task, version)
                loaded[path] = load_served(self.settings, local_folder(self.settings, path), version)
            if task in loaded[path].tasks:
                parts[task] = loaded[path]
        self._served, self._target = ServedClassifier(parts), target
