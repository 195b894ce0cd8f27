"""Behaviour fine-tune whose objective is the served one: an item's TEXT embedding is trained to land where users'
behaviour puts the item.

The data is item texts plus, per item, a target vector in a collaborative space and (optionally) a linear decoder
R: the loss is 1 - cos(R·enc(text), target). recsys computes both from its EASE model (recsys/behaviour.py): with
the served text map Q = U·R (QR of the map from text space onto EASE columns), the target of item j is Uᵀ B_j, so
the loss is the cosine between the item's EASE column B_j and the column the served map predicts from its text
(Q·enc(text_j)), in the part of item space the map can reach: "train through the linear collaborative decoder"
(beeFormer, CB2CF). finetune never imports recsys: targets and decoder arrive as numpy arrays.

One epoch is one pass over the items (not pairs), in length-sorted batches with a tqdm bar (ETA included).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from finetune.args import BehaviourArgs
from finetune.gate import GateDecision
from finetune.progress import ProgressReport
from newsdesk.device import native_bf16, resolve_device

log = logging.getLogger(__name__)


@dataclass
class TargetData:
    """What the collaborative objective trains on: texts[i] should map (through `decoder`) onto targets[i]."""

    texts: list[str]
    targets: np.ndarray  # n x t float32
    decoder: np.ndarray | None = None  # t x d (d = encoder dimension); None: targets are in the encoder space
    weights: np.ndarray | None = None  # per-item loss weights (mean 1); None: uniform
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from newsdesk.errors import InvalidInput

        self.targets = np.asarray(self.targets, dtype=np.float32)
        if self.targets.ndim != 2 or self.targets.shape[0] != len(self.texts):
            raise InvalidInput(f"expected {len(self.texts)} target rows, got shape {self.targets.shape}")
        if self.decoder is not None:
            self.decoder = np.asarray(self.decoder, dtype=np.float32)
            if self.decoder.ndim != 2 or self.decoder.shape[0] != self.targets.shape[1]:
                raise InvalidInput(f"decoder shape {self.decoder.shape} does not fit targets {self.targets.shape}")
        if self.weights is not None and len(self.weights) != len(self.texts):
            raise InvalidInput("one loss weight per text expected")


class BehaviourSource(Protocol):
    """Where the collaborative objective gets its data and its served evaluation (recsys implements it)."""

    def training_data(self, args: BehaviourArgs) -> TargetData:
        """Item texts with their collaborative targets (and decoder) from the interactions."""

    def evaluate(self, encoder_folder: Path | None, label: str, args: BehaviourArgs) -> dict[str, Any]:
        """Served-ranking metrics on dev of the encoder in `encoder_folder` (None: the base encoder)."""

    def data_info(self) -> dict[str, Any]:
        """Which data the run used (files, split), for data.json."""

    def keep_vectors(self, folder: Path, label: str) -> None:
        """Store the catalog vectors evaluated for `label` in the model folder (the index build may reuse them)."""


@dataclass
class FitResult:
    seconds: float
    steps: int
    device: str
    details: dict[str, Any]


def train_to_targets(base_path: Path | str, data: TargetData, args: BehaviourArgs, *, out_dir: Path,
                     device: str = "auto", progress: Callable[[int, int], None] | None = None) -> FitResult:
    """Fine-tune the SentenceTransformer at `base_path` so that decoder·enc(text) points along each target; save the
    result (a plain SentenceTransformer folder, same dimension) to `out_dir`."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tqdm.auto import tqdm

    dev = resolve_device(args.device if args.device != "auto" else device)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = SentenceTransformer(str(base_path), device=dev, local_files_only=True)
    model.max_seq_length = args.max_length
    _freeze_lower_layers(model, args.freeze_layers)
    targets = torch.from_numpy(data.targets).to(dev)
    targets = targets / targets.norm(dim=1, keepdim=True).clamp_min(1e-12)
    decoder = torch.from_numpy(data.decoder).to(dev) if data.decoder is not None else None
    weights = torch.from_numpy(np.asarray(data.weights if data.weights is not None else np.ones(len(data.texts)),
                                          dtype=np.float32)).to(dev)
    lengths = np.asarray([len(t) for t in data.texts])
    per_epoch = math.ceil(len(data.texts) / args.batch_size)
    total = args.max_steps if args.max_steps > 0 else max(1, math.ceil(per_epoch * args.epochs))
    warmup = int(round(total * args.warmup_ratio))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.01)

    def lr_factor(s: int) -> float:  # linear warm-up, then linear decay to 0
        return (s + 1) / max(warmup, 1) if s < warmup else max(0.0, (total - s) / max(total - warmup, 1))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    use_bf16 = args.train_precision != "float32" and (args.train_precision == "bfloat16" or native_bf16(dev))
    model.train()
    started = time.monotonic()
    history: list[float] = []
    step = 0
    report = progress or ProgressReport("recsys (behaviour)")  # the run row's step/total/time left
    with tqdm(total=total, desc="recsys (behaviour)", unit="step", dynamic_ncols=True) as bar:
        while step < total:
            for batch in _length_batches(lengths, args.batch_size, rng):
                if step >= total:
                    break
                features = model.tokenize([data.texts[i] for i in batch])
                features = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in features.items()}
                with torch.autocast(device_type="cuda" if dev == "cuda" else "cpu", dtype=torch.bfloat16,
                                    enabled=use_bf16):
                    emb = model(features)["sentence_embedding"]
                emb = emb.float()
                pred = emb @ decoder.T if decoder is not None else emb
                cos = torch.nn.functional.cosine_similarity(pred, targets[batch], dim=1)
                w = weights[batch]
                loss = ((1.0 - cos) * w).sum() / w.sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad(set_to_none=True)
                step += 1
                history.append(float(loss.detach()))
                bar.update(1)
                rate = step * args.batch_size / max(time.monotonic() - started, 1e-6)
                bar.set_postfix(loss=f"{np.mean(history[-20:]):.4f}", items_s=f"{rate:.1f}", refresh=False)
                report(step, total)
    seconds = time.monotonic() - started
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(str(out_dir))
    first = float(np.mean(history[:max(1, per_epoch // 4)]))
    last = float(np.mean(history[-max(1, per_epoch // 4):]))
    log.info("behaviour fine-tune: %d items, %d steps in %.1fs on %s (loss %.4f -> %.4f)", len(data.texts), step,
             seconds, dev, first, last)
    return FitResult(round(seconds, 1), step, dev, {"objective": "collab", "items": len(data.texts),
                                                     "train_loss_first": round(first, 4),
                                                     "train_loss_last": round(last, 4), "bf16": use_bf16,
                                                     **data.info})


def _length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar text length (less padding), in random order; a fresh shuffle per call (epoch)."""
    order = np.argsort(lengths + rng.uniform(0, lengths.max() * 0.1 + 1, len(lengths)), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _freeze_lower_layers(model: Any, n: int) -> None:
    """Freeze the embeddings and the lowest `n` transformer layers (cheaper backward pass)."""
    if n <= 0:
        return
    body = model[0].auto_model
    for p in body.embeddings.parameters():
        p.requires_grad = False
    for layer in body.encoder.layer[:n]:
        for p in layer.parameters():
            p.requires_grad = False


def encode_texts(folder: Path | str | None, texts: Sequence[str], *, device: str = "cpu", max_length: int = 128,
                 batch_size: int = 64) -> np.ndarray:
    """Normalised vectors of `texts` with the encoder in `folder` (None: the base encoder)."""
    from newsdesk.encoders import load_sentence_encoder

    model = load_sentence_encoder(folder, device=device, cache=False)
    model.max_seq_length = max_length
    return np.asarray(model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=True), dtype=np.float32)


@dataclass(frozen=True)
class ServedRule:
    """The recsys gate on what is served (dev, cold-item protocol): the candidate's served Recall@k may fall by at
    most `max_recall_drop` (relative) against the champion's, and its new-item hit rate must rise."""

    k: int = 10
    max_recall_drop: float = 0.01
    champion_label: str = "current"

    @property
    def metric(self) -> str:
        return f"recall@{self.k}"

    def judge(self, task: str, candidate: dict[str, Any], champion: dict[str, Any] | None) -> GateDecision:
        """`finetune.gate.Rule`: the structured decision (figures in `details`)."""
        ok, reason, figures = self.verdict(candidate, champion)
        return GateDecision(ok, task, self.metric, _num(candidate.get(self.metric)),
                            _num((champion or {}).get(self.metric)), self.max_recall_drop, reason,
                            details={"rule": "served", **figures})

    def verdict(self, candidate: dict[str, Any], champion: dict[str, Any] | None) -> tuple[bool, str, dict[str, Any]]:
        """(promote?, one-line reason, figures)."""
        recall, hit = candidate.get(self.metric), candidate.get("new_item_hit_rate")
        if recall is None or hit is None:
            return False, f"kept: no served {self.metric} / new-item hit rate measured", {}
        if champion is None or champion.get(self.metric) is None:
            return True, (f"promoted: first recsys model (served {self.metric} {recall:.4f}, "
                          f"new-item hit {hit:.4f})"), {}
        best, best_hit = float(champion[self.metric]), float(champion.get("new_item_hit_rate") or 0.0)
        floor = best * (1.0 - self.max_recall_drop)
        figures = {"recall": recall, "champion_recall": best, "recall_floor": round(floor, 4),
                   "new_item_hit_rate": hit, "champion_new_item_hit_rate": best_hit}
        shown = (f"served {self.metric} {recall:.4f} vs {self.champion_label} {best:.4f} (floor {floor:.4f}), "
                 f"new-item hit rate {hit:.4f} vs {best_hit:.4f}")
        if recall < floor:
            return False, f"kept, not promoted: served {self.metric} falls more than " \
                          f"{self.max_recall_drop:.0%}: {shown}", figures
        if hit <= best_hit:
            return False, f"kept, not promoted: new-item hit rate does not rise: {shown}", figures
        return True, f"promoted: {shown}", figures


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
