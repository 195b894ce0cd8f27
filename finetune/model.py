"""The classifier network: the MiniLM body, pooling and one linear head per task; saved as a plain folder.

One model serves one task (sentiment, topic) or several from one encoder pass (a joint, multi-task model).
Training labels are ids in the concatenated label space of the heads: task t's label j is `offsets[t] + j`, so one
`labels` tensor says both the task of a row and its class, and a batch may mix tasks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

HEAD_FILE = "head.safetensors"
CONFIG_FILE = "classifier.json"
HEAD_INIT_SEED = 1234


class ClassifierModel(nn.Module):
    """Transformer body + pooling (mean over tokens, or BERT's CLS pooler) + dropout + a linear head per task.

    Mean pooling is what all-MiniLM-L6-v2 was trained with; its CLS pooler was never trained for it.
    `tasks` maps each task name to its labels, in head order. The loss of a batch is the cross-entropy of each row
    under its own task's head, averaged over the rows (so tasks weigh by their share of the training rows).
    """

    def __init__(self, body: nn.Module, tasks: Mapping[str, Sequence[str]], *, pooling: str = "mean",
                 dropout: float = 0.1, class_weights: Mapping[str, list[float]] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be mean or cls, got {pooling!r}")
        if not tasks:
            raise ValueError("a classifier needs at least one task")
        self.body = body
        self.pooling = pooling
        self.label_smoothing = label_smoothing
        self.tasks: dict[str, tuple[str, ...]] = {task: tuple(labels) for task, labels in tasks.items()}
        self.offsets: dict[str, int] = {}
        start = 0
        for task, labels in self.tasks.items():
            self.offsets[task] = start
            start += len(labels)
        self.num_labels = start
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({task: nn.Linear(body.config.hidden_size, len(labels))
                                    for task, labels in self.tasks.items()})
        # the same head initialisation whatever the seed (BERT's N(0, 0.02)): runs that differ only in data order
        # and dropout start from one point
        generator = torch.Generator().manual_seed(HEAD_INIT_SEED)
        for head in self.heads.values():
            nn.init.normal_(head.weight, std=0.02, generator=generator)
            nn.init.zeros_(head.bias)
        self._class_weights = {task: torch.tensor(w, dtype=torch.float) for task, w in (class_weights or {}).items()}
        self.config = body.config  # the Trainer reads a few attributes from model.config

    def global_id(self, task: str, label: str) -> int:
        """The id of `label` of `task` in the concatenated label space (what training rows carry)."""
        return self.offsets[task] + self.tasks[task].index(label)

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Concatenated logits -> each task's slice of them."""
        return {task: logits[:, off:off + len(self.tasks[task])] for task, off in self.offsets.items()}

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any) -> torch.Tensor:
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, **extra)
        if self.pooling == "cls":
            return out.pooler_output
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def head_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Every head's logits for pooled vectors, concatenated in task order."""
        return torch.cat([head(pooled) for head in self.heads.values()], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        logits = self.head_logits(self.dropout(self.pool(input_ids, attention_mask, **extra)))
        out: dict[str, torch.Tensor] = {"logits": logits}
        if labels is not None:
            out["loss"] = self._loss(logits, labels)
        return out

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros((), dtype=torch.float)
        for task, off in self.offsets.items():
            rows = (labels >= off) & (labels < off + len(self.tasks[task]))
            if not rows.any():
                continue
            weight = self._class_weights.get(task)
            task_logits = logits[rows, off:off + len(self.tasks[task])].float()
            loss = F.cross_entropy(task_logits, labels[rows] - off, reduction="sum",
                                   weight=weight.to(logits.device) if weight is not None else None,
                                   label_smoothing=self.label_smoothing)
            total = total + loss
        return total / labels.shape[0]


def predict_probs(model: ClassifierModel, tokenizer: Any, texts: list[str], max_length: int,
                  tasks: Sequence[str] | None = None, batch_size: int = 128,
                  autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Task -> (len(texts), labels) class probabilities from one encoder pass, in input order (batches sorted by
    length). `tasks`: which heads (default: all). `autocast`: run under autocast to this dtype (e.g. bfloat16);
    the probabilities are float32 either way."""
    wanted = list(tasks) if tasks is not None else list(model.tasks)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {task: [] for task in wanted}
    was_training = model.training
    model.eval()
    cast = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] or " " for i in order[start:start + batch_size]]
            enc = tokenizer(chunk, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            pooled = model.pool(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            for task in wanted:
                parts[task].append(torch.softmax(model.heads[task](pooled).float(), dim=-1).cpu())
    model.train(was_training)
    if not order:
        return {task: torch.zeros((0, len(model.tasks[task]))) for task in wanted}
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return {task: torch.cat(chunks)[inverse] for task, chunks in parts.items()}


def pooled_vectors(model: ClassifierModel, tokenizer: Any, texts: list[str], max_length: int,
                   autocast: torch.dtype | None = None, batch_size: int = 128) -> torch.Tensor:
    """(len(texts), hidden) pooled sentence vectors, in input order (float32)."""
    device = next(model.parameters()).device
    cast = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    out = []
    with torch.inference_mode(), cast:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            out.append(model.pool(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, model.config.hidden_size))


def save_classifier_model(model: ClassifierModel, tokenizer: Any, folder: Path, *, max_length: int) -> None:
    """Write body (transformers format), tokenizer, heads and `classifier.json` (tasks and labels) to `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    model.body.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    save_file({f"{task}.{k}": v.detach().float().cpu().contiguous()
               for task, head in model.heads.items() for k, v in head.state_dict().items()}, str(folder / HEAD_FILE))
    meta: dict[str, Any] = {"tasks": {task: list(labels) for task, labels in model.tasks.items()},
                            "pooling": model.pooling, "max_length": max_length}
    if "sentiment" in model.tasks:
        meta["labels"] = list(model.tasks["sentiment"])  # what sentiment-only readers of this file look at
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def read_tasks(folder: Path) -> dict[str, list[str]]:
    """Task -> labels of the model in `folder` (a folder from before multi-task models holds one sentiment head)."""
    meta = json.loads((folder / CONFIG_FILE).read_text())
    return meta.get("tasks") or {"sentiment": meta["labels"]}


def load_classifier_model(folder: Path, device: str = "cpu") -> tuple[ClassifierModel, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, classifier.json) from a folder written by `save_classifier_model`."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    meta = json.loads((folder / CONFIG_FILE).read_text())
    tasks = read_tasks(folder)
    body = AutoModel.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = ClassifierModel(body, tasks, pooling=meta.get("pooling", "mean"))
    saved = load_file(str(folder / HEAD_FILE))
    if "weight" in saved:  # one unnamed head: a sentiment model saved before heads had task names
        saved = {f"{next(iter(tasks))}.{k}": v for k, v in saved.items()}
    model.heads.load_state_dict(saved)
    model.to(device).eval()
    return model, tokenizer, meta
