"""Puts a loaded classifier, or the catalog encoder, on its fastest passing inference path (chosen once, at load).

`select_classifier_path` and `load_catalog_encoder` run `finetune.inference`'s checks on this machine the first time
a model is loaded (exports included: a minute or two on two cores), then reuse the cached decision. A path whose
export or check fails is refused with a log line saying why, and a missing onnxruntime leaves today's torch path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.export import OnnxEngine, export_classifier, export_encoder, runtime_missing
from finetune.inference import (
    OnnxClassifierEngine,
    PathCheck,
    Selection,
    TorchClassifierEngine,
    cache_dir,
    candidate_names,
    check_choice,
    choose,
    classifier_check,
    encoder_check_texts,
    ensure_exported,
    int8_graph,
    label_quality,
    log_checks,
    machine_signature,
    neighbour_quality,
    read_selection,
    timed,
    write_selection,
)
from finetune.model import load_classifier_model
from newsdesk.encoders import load_sentence_encoder

log = logging.getLogger(__name__)

BATCH = 64
BuildErrors = (RuntimeError, OSError, ValueError, KeyError, ImportError, AttributeError, TypeError)


def run_selection(what: str, key: dict[str, Any], reference: Any, names: Sequence[str],
                  build: Callable[[str], Any], run: Callable[[Any, list[str]], Any],
                  judge: Callable[[Any, Any], tuple], texts: list[str], refused: Sequence[PathCheck] = ()
                  ) -> tuple[Selection, dict[str, Any]]:
    """Check the reference and every named path on this machine: (selection, built engines by path name).

    `build(name)` makes a path's engine (raising when its export or session fails), `run(engine, texts)` computes
    the check outputs (timed after a warm-up on a few texts), `judge(reference_out, out)` says (passed, reason,
    figures). `refused` are paths known to be unavailable (their reason is logged and stored as the check).
    """
    run(reference, texts[:8])
    ref_out, ref_speed = timed(lambda: run(reference, texts), len(texts))
    checks = [PathCheck(reference.name, True, "reference", round(ref_speed, 1), judge(ref_out, ref_out)[2]),
              *refused]
    engines = {reference.name: reference}
    for name in names:
        try:
            engine = build(name)
            run(engine, texts[:8])
            out, speed = timed(lambda engine=engine: run(engine, texts), len(texts))
        except BuildErrors as exc:
            log.warning("%s: path %s failed to build or run", what, name, exc_info=True)
            checks.append(PathCheck(name, False, f"failed: {type(exc).__name__}: {exc}"))
            continue
        ok, reason, figures = judge(ref_out, out)
        checks.append(PathCheck(name, ok, reason, round(speed, 1), figures))
        if ok:
            engines[name] = engine
    chosen, why = choose(checks, reference.name)
    log_checks(what, checks, chosen, why)
    return Selection(chosen, checks, key, why), engines


def _onnx_refusals(names: Sequence[str], reason: str) -> list[PathCheck]:
    return [PathCheck(name, False, reason) for name in names]


# --- classifiers ---------------------------------------------------------------------------------------------------

def classifier_engine(clf: Any, cache: Path, name: str) -> Any:
    """The engine of path `name` for `clf` (graphs exported/quantised into `cache` when missing).

    Raises:
        RuntimeError, OSError, ValueError, ImportError: the export or the runtime session failed.
    """
    if not name.startswith("onnx"):
        dtype = torch.bfloat16 if name.endswith("bfloat16") else None
        return TorchClassifierEngine(clf.model, clf.tokenizer, clf.max_length, dtype)
    graph = ensure_exported(cache, lambda out: export_classifier(load_classifier_model(clf.folder, "cpu")[0], out))
    if name == "onnx-float32":
        return OnnxClassifierEngine(name, OnnxEngine(graph, clf.tokenizer, clf.max_length), clf.tasks)
    return OnnxClassifierEngine(name, OnnxEngine(int8_graph(cache, name), clf.tokenizer, clf.max_length,
                                                 per_text=True), clf.tasks)


def select_classifier_path(clf: Any, home: Path, choice: str = "auto", tolerance: float = 0.005) -> Selection | None:
    """Put `clf` (a `finetune.classifier.TextClassifier`) on the fastest path that passed its check on this machine
    (None: `choice` is "torch", today's precision rule applies). The reference is torch float32.

    Raises:
        InvalidInput: an unknown `choice`.
    """
    if check_choice(choice) == "torch":
        return None
    device = clf.device.type
    onnx_reason = runtime_missing() if device == "cpu" else ""
    key = {**machine_signature(device), "choice": choice, "tolerance": tolerance}
    cache = cache_dir(home, clf.folder)
    names = candidate_names(choice, device, onnx_reason)
    reference = TorchClassifierEngine(clf.model, clf.tokenizer, clf.max_length, None)

    def build(name: str) -> Any:
        return reference if name == reference.name else classifier_engine(clf, cache, name)

    selection = read_selection(cache, key)
    if selection is not None:
        try:
            clf.use(build(selection.chosen))
            log.info("%s serves with %s (checked on this machine before)", clf.version, selection.chosen)
            return selection
        except BuildErrors as exc:
            log.warning("cached path %s of %s is unusable (%s); checking again", selection.chosen, clf.version, exc)
    texts, gold = classifier_check(clf.folder, clf.tasks)

    def run(engine: Any, batch: list[str]) -> dict[str, list[str]]:
        probs = engine.probs(batch, None, BATCH)
        return {task: [clf.task_labels[task][i] for i in p.argmax(dim=-1).tolist()] for task, p in probs.items()}

    def judge(ref: dict[str, list[str]], out: dict[str, list[str]]) -> tuple[bool, str, dict[str, Any]]:
        return label_quality(ref, out, gold, clf.task_labels, tolerance)

    missing = [n for n in candidate_names(choice, device, "") if n not in names]
    selection, engines = run_selection(f"{clf.version}", key, reference, names, build, run, judge, texts,
                                       _onnx_refusals(missing, onnx_reason))
    write_selection(cache, selection)
    clf.use(engines[selection.chosen])
    return selection


# --- the catalog encoder -------------------------------------------------------------------------------------------

class TorchSentenceEncoder:
    """A SentenceTransformer, plain float32 or under bfloat16 autocast, behind `encode`."""

    def __init__(self, model: Any, autocast: torch.dtype | None = None) -> None:
        self.model, self.autocast = model, autocast
        self.name = f"{'cuda' if model.device.type == 'cuda' else 'torch'}-{'bfloat16' if autocast else 'float32'}"

    def encode(self, texts: Sequence[str], batch_size: int = BATCH, **kwargs: Any) -> np.ndarray:
        kwargs.setdefault("convert_to_numpy", True)
        kwargs.setdefault("show_progress_bar", False)
        if self.autocast is None:
            return np.asarray(self.model.encode(list(texts), batch_size=batch_size, **kwargs), dtype=np.float32)
        with torch.autocast(self.model.device.type, dtype=self.autocast):
            out = self.model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                                    **{k: v for k, v in kwargs.items() if k != "convert_to_numpy"})
        return out.float().cpu().numpy()


class OnnxSentenceEncoder:
    """An exported encoder graph on ONNX Runtime behind `encode` (vectors as the SentenceTransformer makes them)."""

    def __init__(self, name: str, engine: OnnxEngine) -> None:
        self.name, self.engine = name, engine

    def encode(self, texts: Sequence[str], batch_size: int = BATCH, normalize_embeddings: bool = False,
               **_: Any) -> np.ndarray:
        out = self.engine.run(list(texts), batch_size)["embedding"]
        if normalize_embeddings:
            out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out


def encoder_engine(model: Any, folder: Path, cache: Path, name: str) -> Any:
    """The engine of path `name` for the SentenceTransformer `model` loaded from `folder` (graphs in `cache`).

    Raises:
        RuntimeError, OSError, ValueError, ImportError: the export or the runtime session failed.
    """
    if not name.startswith("onnx"):
        return TorchSentenceEncoder(model, torch.bfloat16 if name.endswith("bfloat16") else None)
    graph = ensure_exported(cache, lambda out: export_encoder(load_sentence_encoder(folder, device="cpu", cache=False),
                                                              out))
    per_text = name != "onnx-float32"
    max_length = int(getattr(model, "max_seq_length", 256) or 256)
    return OnnxSentenceEncoder(name, OnnxEngine(int8_graph(cache, name) if per_text else graph, model.tokenizer,
                                                max_length, per_text=per_text))


def load_catalog_encoder(folder: Path, home: Path, *, device: str = "cpu", choice: str = "auto") -> Any:
    """The encoder that embeds catalog items, on the fastest path that keeps float32's neighbours on this machine
    (an object with SentenceTransformer's `encode(texts, batch_size=..., normalize_embeddings=...)`).

    Raises:
        Unavailable: the folder does not hold a loadable encoder.  InvalidInput: an unknown `choice`.
    """
    model = load_sentence_encoder(folder, device=device)
    reference = TorchSentenceEncoder(model)
    if check_choice(choice) == "torch":
        return reference
    dev = model.device.type
    onnx_reason = runtime_missing() if dev == "cpu" else ""
    key = {**machine_signature(dev), "choice": choice}
    cache = cache_dir(home, folder)
    names = candidate_names(choice, dev, onnx_reason)

    def build(name: str) -> Any:
        return reference if name == reference.name else encoder_engine(model, folder, cache, name)

    selection = read_selection(cache, key)
    if selection is not None:
        try:
            return build(selection.chosen)
        except BuildErrors as exc:
            log.warning("cached encoder path %s is unusable (%s); checking again", selection.chosen, exc)
    texts = encoder_check_texts()

    def run(engine: Any, batch: list[str]) -> np.ndarray:
        return engine.encode(batch, batch_size=BATCH, normalize_embeddings=True)

    missing = [n for n in candidate_names(choice, dev, "") if n not in names]
    selection, engines = run_selection(f"encoder {Path(folder).name}", key, reference, names, build, run,
                                       neighbour_quality, texts, _onnx_refusals(missing, onnx_reason))
    write_selection(cache, selection)
    return engines[selection.chosen]
