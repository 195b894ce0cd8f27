"""Loads a sentiment version and labels batches of texts; `ClassifierHandle` follows promotions live."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from finetune.model import encode_pooled, load_sentiment_model
from newsdesk.device import native_bf16, resolve_device
from newsdesk.errors import InvalidInput, Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str
    scores: dict[str, float]


class SentimentClassifier:
    """A loaded sentiment model: `predict(texts)` returns one `Prediction` per text, in order."""

    def __init__(self, folder: str | Path, *, version: str = "", device: str = "cpu",
                 precision: str = "float32") -> None:
        folder = Path(folder)
        try:
            self.model, self.tokenizer, meta = load_sentiment_model(folder, resolve_device(device))
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot load sentiment model from {folder}: {exc}") from exc
        self.version = version or folder.name
        self.labels: tuple[str, ...] = tuple(meta["labels"])
        self.max_length = int(meta.get("max_length", 128))
        self.knn = meta.get("knn_memory")
        self.device = next(self.model.parameters()).device
        self.dtype = inference_dtype(precision, self.device)
        self.precision = str(self.dtype).removeprefix("torch.") if self.dtype else "float32"

    tasks: tuple[str, ...] = ("sentiment",)

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, Prediction]]:
        """Per text, task name -> prediction (a sentiment-only model has one task)."""
        return [{"sentiment": p} for p in self.predict(texts, batch_size)]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), len(labels)) class probabilities."""
        pooled, probs = encode_pooled(self.model, self.tokenizer, list(texts), self.max_length, batch_size,
                                      autocast=self.dtype)
        if self.knn is not None and len(texts):
            probs = self.knn.combine(pooled, probs)
        return probs

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        """One prediction per text, in input order: the most probable label and every label's probability."""
        probs = self.predict_proba(texts, batch_size)
        preds = []
        for row in probs.tolist():
            scores = {label: round(p, 6) for label, p in zip(self.labels, row)}
            preds.append(Prediction(max(scores, key=scores.get), scores))
        return preds


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


class ClassifierHandle:
    """The current sentiment version, re-checked in the database at most every `refresh_s` seconds.

    `get()` swaps in a newly promoted (or rolled-back-to) version without a restart.
    """

    def __init__(self, settings: Settings, refresh_s: float = 5.0) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._classifier: SentimentClassifier | None = None
        self._checked = 0.0

    def get(self) -> SentimentClassifier:
        """The classifier of the current version.

        Raises:
            Unavailable: no sentiment version is current (or it cannot be loaded).
        """
        with self._lock:
            now = time.monotonic()
            if self._classifier is None or now - self._checked >= self.refresh_s:
                self._checked = now
                self._refresh()
            if self._classifier is None:
                raise Unavailable("no sentiment model is in service yet: run `newsdesk finetune sentiment`")
            return self._classifier

    def _refresh(self) -> None:
        from finetune.registry import current_row
        from newsdesk.db import session_scope

        with session_scope(self.settings.database_url) as session:
            row = current_row(session, "sentiment")
            target = (row.version, row.path) if row is not None else None
        if target is None:
            self._classifier = None
            return
        if self._classifier is not None and self._classifier.version == target[0]:
            return
        log.info("loading sentiment model %s", target[0])
        self._classifier = SentimentClassifier(target[1], version=target[0], device=self.settings.device,
                                               precision=self.settings.finetune.inference_precision)
