"""Inference paths of a loaded model and the one choice among them, made at load: the fastest path whose quality
check passed on this machine.

Paths: torch float32 (the reference), torch bfloat16 where the CPU or GPU computes it natively, and on a CPU ONNX
Runtime float32 and int8 (dynamic U8S8 quantisation; its per-channel and reduce-range variants are all tried and
the most accurate one competes). A classifier path passes when it loses at most `tolerance` macro-F1 per task
against torch float32 on the check set stored with the version (without one: when it keeps `MIN_AGREEMENT` of
float32's labels on the bundled demo texts); an encoder path when its vectors keep float32's neighbours. The
exported graphs and the decision (`selection.json`, keyed by this machine and the libraries) are cached under
NEWSDESK_HOME/inference/<task>/<version>, so a process loads, it does not export, after the first time.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import newsdesk
from finetune.checkset import read_check_set
from finetune.evaluate import classification_report
from finetune.export import INT8_CONFIGS, OnnxEngine
from finetune.model import predict_probs
from newsdesk.device import native_bf16
from newsdesk.errors import InvalidInput

log = logging.getLogger(__name__)

PATH_CHOICES = ("auto", "torch", "onnx-float32", "onnx-int8")
MIN_AGREEMENT = 0.99  # without gold labels: share of the float32 labels a path must keep
MIN_NEIGHBOURS = 0.9  # encoders: share of each check text's 10 float32 nearest neighbours a path must keep
SELECTION_FILE = "selection.json"
DEMO = Path(newsdesk.__file__).parent / "demo"


@dataclass(frozen=True)
class PathCheck:
    """How one path did on this machine: passed or refused (why), its speed on the check texts and its quality."""

    path: str
    ok: bool
    reason: str
    texts_per_s: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """The path chosen for one model on one machine, and every path's check."""

    chosen: str
    checks: list[PathCheck]
    machine: dict[str, Any]
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "reason": self.reason, "machine": self.machine,
                "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Selection:
        return cls(str(data["chosen"]), [PathCheck(**c) for c in data["checks"]], dict(data["machine"]),
                   str(data.get("reason", "")))


def machine_signature(device: str = "cpu") -> dict[str, Any]:
    """What a path's speed and numerics depend on: the CPU (model, vector extensions, cores), the GPU and the
    library versions. A cached selection for another signature is made again."""
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    signature: dict[str, Any] = {"cpu": model, "isa": [f for f in wanted if f in flags],
                                 "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__}
    try:
        import onnxruntime

        signature["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        signature["onnxruntime"] = None
    if device == "cuda":
        signature["gpu"] = torch.cuda.get_device_name(0)
    return signature


def check_choice(choice: str) -> str:
    """Raises InvalidInput for an unknown `finetune.inference_path`."""
    if choice not in PATH_CHOICES:
        raise InvalidInput(f"inference path must be one of {', '.join(PATH_CHOICES)}, got {choice!r}",
                           {"key": "finetune.inference_path"})
    return choice


def cache_dir(home: Path, model_folder: Path) -> Path:
    """NEWSDESK_HOME/inference/<task>/<version> for a model folder NEWSDESK_HOME/models/<task>/<version>
    (NEWSDESK_HOME/inference/base/<folder name> for a folder outside the registry, such as the base encoder)."""
    folder = Path(model_folder)
    if folder.parent.parent.name != "models":
        return Path(home) / "inference" / "base" / folder.name
    return Path(home) / "inference" / folder.parent.name / folder.name


def read_selection(folder: Path, machine: dict[str, Any] | None = None) -> Selection | None:
    """The cached selection in `folder` (None when absent, unreadable or made for another machine)."""
    try:
        selection = Selection.from_json(json.loads((folder / SELECTION_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return selection if machine is None or selection.machine == machine else None


def write_selection(folder: Path, selection: Selection) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{SELECTION_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(selection.to_json(), indent=2))
    os.replace(tmp, folder / SELECTION_FILE)


# --- timing and checks ---------------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], n: int) -> tuple[Any, float]:
    """(fn(), texts per second for `n` texts) after one small warm-up call is up to the caller."""
    start = time.perf_counter()
    out = fn()
    return out, n / max(time.perf_counter() - start, 1e-9)


def label_quality(reference: dict[str, list[str]], candidate: dict[str, list[str]],
                  gold: dict[str, list[str | None]], labels: dict[str, Sequence[str]], tolerance: float
                  ) -> tuple[bool, str, dict[str, Any]]:
    """(passed, reason, per-task figures) of a classifier path against the float32 reference.

    Where a task's rows have gold labels, the path may lose at most `tolerance` macro-F1; without, it must keep
    `MIN_AGREEMENT` of the reference's labels.
    """
    quality: dict[str, Any] = {}
    failures = []
    for task, ref in reference.items():
        cand = candidate[task]
        agreement = float(np.mean([a == b for a, b in zip(ref, cand, strict=True)])) if ref else 1.0
        figures: dict[str, Any] = {"agreement": round(agreement, 4), "n": len(ref)}
        rows = [i for i, g in enumerate(gold.get(task, [])) if g is not None]
        if rows:
            known = list(labels[task]) + sorted({gold[task][i] for i in rows} - set(labels[task]))
            ref_f1 = classification_report([gold[task][i] for i in rows], [ref[i] for i in rows], known)["macro_f1"]
            f1 = classification_report([gold[task][i] for i in rows], [cand[i] for i in rows], known)["macro_f1"]
            figures.update(macro_f1=f1, reference_macro_f1=ref_f1, loss=round(ref_f1 - f1, 4))
            if ref_f1 - f1 > tolerance + 1e-9:
                failures.append(f"{task} macro-F1 {f1:.4f} vs {ref_f1:.4f} float32 (loses {ref_f1 - f1:.4f} "
                                f"> {tolerance})")
        elif agreement < MIN_AGREEMENT:
            failures.append(f"{task} keeps {agreement:.2%} of the float32 labels (< {MIN_AGREEMENT:.0%})")
        quality[task] = figures
    return not failures, "; ".join(failures) or "within tolerance", quality


def neighbour_quality(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> tuple[bool, str, dict[str, Any]]:
    """(passed, reason, figures) of an encoder path: the share of each text's `k` nearest float32 neighbours among
    its own `k` nearest (cosine), and the mean cosine between the two vectors of a text."""
    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.clip(np.linalg.norm(m, axis=1, keepdims=True), 1e-12, None)

    ref, cand = unit(reference), unit(candidate)
    k = min(k, len(ref) - 1)
    if k < 1:
        return True, "too few texts to compare", {}
    def top(m: np.ndarray) -> np.ndarray:
        sims = m @ m.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    kept = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top(ref), top(cand))]))
    cosine = float(np.mean(np.sum(ref * cand, axis=1)))
    figures = {"neighbours_kept": round(kept, 4), "mean_cosine": round(cosine, 5), "n": len(ref)}
    if kept < MIN_NEIGHBOURS:
        return False, f"keeps {kept:.2%} of the float32 nearest neighbours (< {MIN_NEIGHBOURS:.0%})", figures
    return True, "within tolerance", figures


def choose(checks: list[PathCheck], reference: str) -> tuple[str, str]:
    """(chosen path, why): the most accurate passing int8 variant competes; the fastest passing path wins."""
    passed = [c for c in checks if c.ok]
    int8 = [c for c in passed if c.path.startswith("onnx-int8")]
    if int8:
        best = max(int8, key=lambda c: (_accuracy(c), c.texts_per_s))
        passed = [c for c in passed if not c.path.startswith("onnx-int8") or c is best]
    if not passed:
        return reference, "no path passed; serving the reference"
    fastest = max(passed, key=lambda c: c.texts_per_s)
    return fastest.path, f"fastest passing path ({fastest.texts_per_s:.0f} texts/s)"


def _accuracy(check: PathCheck) -> float:
    """A path's worst per-task figure: macro-F1 loss (negated) or agreement/neighbours kept."""
    values = []
    for figures in check.quality.values():
        if isinstance(figures, dict):
            values.append(-figures["loss"] if "loss" in figures else figures.get("agreement", 0.0))
    if "neighbours_kept" in check.quality:
        values.append(check.quality["neighbours_kept"])
    return min(values) if values else 0.0


def log_checks(what: str, checks: list[PathCheck], chosen: str, why: str) -> None:
    for c in checks:
        if c.ok:
            log.info("%s: path %s passed (%.0f texts/s; %s)", what, c.path, c.texts_per_s, c.quality)
        else:
            log.warning("%s: path %s refused: %s", what, c.path, c.reason)
    log.info("%s: serving with %s (%s)", what, chosen, why)


# --- the torch engines ---------------------------------------------------------------------------------------------

class TorchClassifierEngine:
    """Today's path: the torch model, plain float32 or under bfloat16 autocast."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int, autocast: torch.dtype | None) -> None:
        self.model, self.tokenizer, self.max_length, self.autocast = model, tokenizer, max_length, autocast
        device = next(model.parameters()).device.type
        self.name = f"{'cuda' if device == 'cuda' else 'torch'}-{'bfloat16' if autocast else 'float32'}"

    def probs(self, texts: Sequence[str], tasks: Sequence[str] | None, batch_size: int) -> dict[str, torch.Tensor]:
        return predict_probs(self.model, self.tokenizer, list(texts), self.max_length, tasks, batch_size,
                             autocast=self.autocast)


class OnnxClassifierEngine:
    """An exported classifier graph on ONNX Runtime (one output per head)."""

    def __init__(self, name: str, engine: OnnxEngine, tasks: Sequence[str]) -> None:
        self.name, self.engine, self.tasks = name, engine, tuple(tasks)

    def probs(self, texts: Sequence[str], tasks: Sequence[str] | None, batch_size: int) -> dict[str, torch.Tensor]:
        out = self.engine.run(texts, batch_size)
        return {task: torch.from_numpy(out[task]) for task in (tasks or self.tasks)}


def fallback_texts() -> list[str]:
    """The bundled demo texts (sentiment and topic dev files): the check texts of a version stored without a check
    set, compared by agreement with the float32 labels."""
    texts: list[str] = []
    for name in ("sentiment_dev.csv", "topic_dev.csv"):
        with (DEMO / name).open(encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f) if row.get("text")]
    return texts


def encoder_check_texts(limit: int = 600) -> list[str]:
    """Catalog-like texts for an encoder's check: the demo headlines' titles."""
    with (DEMO / "headlines.csv").open(encoding="utf-8", newline="") as f:
        return [row["title"] for row in csv.DictReader(f) if row.get("title")][:limit]


def classifier_check(folder: Path, tasks: Sequence[str]) -> tuple[list[str], dict[str, list[str | None]]]:
    """(texts, task -> gold label per text or None) for a classifier's check: the union of the tasks' stored
    check rows (every head scores every text in one pass), else the bundled demo texts without gold labels."""
    stored = read_check_set(folder)
    texts: list[str] = []
    gold: dict[str, list[str | None]] = {task: [] for task in tasks}
    for task in tasks:
        for text, label in stored.get(task, []):
            texts.append(text)
            for t in tasks:
                gold[t].append(label if t == task else None)
    if not texts:
        texts = fallback_texts()
        gold = {task: [None] * len(texts) for task in tasks}
    return texts, gold


def candidate_names(choice: str, device: str, onnx_reason: str) -> list[str]:
    """The paths to check besides the float32 reference, for `finetune.inference_path` = `choice`."""
    names: list[str] = []
    if choice in ("auto", "torch") and native_bf16(device):
        names.append(f"{'cuda' if device == 'cuda' else 'torch'}-bfloat16")
    if device == "cpu" and not onnx_reason and choice != "torch":
        if choice in ("auto", "onnx-float32"):
            names.append("onnx-float32")
        if choice in ("auto", "onnx-int8"):
            names += [f"onnx-{c.name}" for c in INT8_CONFIGS]
    return names


def ensure_exported(cache: Path, export: Callable[[Path], Path]) -> Path:
    """The cached float32 graph `model.onnx`, exported first when missing (into a private temporary folder, then
    renamed into place: concurrent loaders each write a whole graph, and readers never see half of one)."""
    graph = cache / "model.onnx"
    if not graph.is_file():
        started = time.monotonic()
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
        try:
            export(tmp / "model.onnx")
            os.replace(tmp / "model.onnx", graph)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("exported %s to ONNX in %.1fs", cache.name, time.monotonic() - started)
    return graph


def int8_graph(cache: Path, name: str) -> Path:
    """The cached int8 graph of path `name` (onnx-int8, onnx-int8-pc, ...), quantised from model.onnx if missing."""
    from finetune.export import quantize

    config = next(c for c in INT8_CONFIGS if f"onnx-{c.name}" == name)
    graph = cache / f"model-{config.name}.onnx"
    if not graph.is_file():
        tmp = cache / f".{graph.name}.{os.getpid()}"
        quantize(cache / "model.onnx", tmp, config)
        os.replace(tmp, graph)
    return graph
