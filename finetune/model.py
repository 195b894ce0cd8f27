"""The sentiment network: the MiniLM body, mean pooling and a linear head; saved as a plain folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

HEAD_FILE = "head.safetensors"
KNN_FILE = "knn.safetensors"
CONFIG_FILE = "classifier.json"
HEAD_INIT_SEED = 1234


class SentimentModel(nn.Module):
    """Transformer body + pooling (mean over tokens, or BERT's CLS pooler) + dropout + linear head.

    Mean pooling is what all-MiniLM-L6-v2 was trained with; its CLS pooler was never trained for it.
    `rdrop_alpha` > 0 adds R-Drop (two dropout passes, symmetric KL between them) during training.
    """

    def __init__(self, body: nn.Module, num_labels: int, *, pooling: str = "mean", dropout: float = 0.1,
                 class_weights: list[float] | None = None, rdrop_alpha: float = 0.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be mean or cls, got {pooling!r}")
        self.body = body
        self.pooling = pooling
        self.rdrop_alpha = rdrop_alpha
        self.label_smoothing = label_smoothing
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(body.config.hidden_size, num_labels)
        # the same head initialisation whatever the seed (BERT's N(0, 0.02)), so that runs which differ only in
        # data order and dropout start from one point and their weights can be averaged (a "soup")
        nn.init.normal_(self.head.weight, std=0.02, generator=torch.Generator().manual_seed(HEAD_INIT_SEED))
        nn.init.zeros_(self.head.bias)
        weights = torch.tensor(class_weights, dtype=torch.float) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.config = body.config  # the Trainer reads a few attributes from model.config

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any) -> torch.Tensor:
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, **extra)
        if self.pooling == "cls":
            return out.pooler_output
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any) -> torch.Tensor:
        return self.head(self.dropout(self.pool(input_ids, attention_mask, **extra)))

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.class_weights.to(logits.dtype) if self.class_weights is not None else None
        return F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=self.label_smoothing)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> dict[str, torch.Tensor]:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        logits = self._logits(input_ids, attention_mask, **extra)
        out: dict[str, torch.Tensor] = {"logits": logits}
        if labels is None:
            return out
        loss = self._ce(logits, labels)
        if self.training and self.rdrop_alpha > 0:
            logits2 = self._logits(input_ids, attention_mask, **extra)
            loss = 0.5 * (loss + self._ce(logits2, labels))
            p, q = F.log_softmax(logits.float(), -1), F.log_softmax(logits2.float(), -1)
            kl = 0.5 * (F.kl_div(p, q, log_target=True, reduction="batchmean")
                        + F.kl_div(q, p, log_target=True, reduction="batchmean"))
            loss = loss + self.rdrop_alpha * kl
        out["loss"] = loss
        return out


class KnnMemory:
    """Pooled, L2-normalised vectors of the training rows and their label ids: a k-NN vote mixed into the head.

    p = mix * softmax(head) + (1 - mix) * vote, where vote weighs the k most similar training rows by
    exp(cosine / temperature).
    """

    def __init__(self, vectors: torch.Tensor, labels: torch.Tensor, *, k: int, mix: float,
                 temperature: float) -> None:
        self.vectors, self.labels = vectors, labels
        self.k, self.mix, self.temperature = k, mix, temperature

    @classmethod
    def build(cls, model: SentimentModel, tokenizer: Any, texts: list[str], label_ids: list[int], max_length: int,
              *, k: int, mix: float, temperature: float = 0.05) -> KnnMemory:
        """The memory of labelled texts as `model` pools them (the training rows, after fine-tuning)."""
        vectors, _ = encode_pooled(model, tokenizer, texts, max_length)
        return cls(F.normalize(vectors, dim=-1), torch.tensor(label_ids), k=k, mix=mix, temperature=temperature)

    def combine(self, pooled: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        sims = F.normalize(pooled.float(), dim=-1) @ self.vectors.to(pooled.device).float().T
        top, idx = sims.topk(min(self.k, sims.shape[1]), dim=1)
        weights = torch.exp((top - top[:, :1]) / self.temperature)  # shifted for numerical safety
        votes = torch.zeros_like(probs).scatter_add_(1, self.labels.to(pooled.device)[idx], weights)
        return self.mix * probs + (1 - self.mix) * votes / votes.sum(1, keepdim=True)

    def meta(self) -> dict[str, Any]:
        return {"k": self.k, "mix": self.mix, "temperature": self.temperature, "rows": int(self.vectors.shape[0])}


def encode_pooled(model: SentimentModel, tokenizer: Any, texts: list[str], max_length: int,
                  batch_size: int = 128, autocast: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled vectors, head probabilities) for texts, in input order (batches sorted by length).

    `autocast`: run the model under autocast to this dtype (e.g. bfloat16); outputs are float32 either way.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    device = next(model.parameters()).device
    pooled_parts, prob_parts = [], []
    was_training = model.training
    model.eval()
    cast = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with torch.inference_mode(), cast:
        for start in range(0, len(order), batch_size):
            chunk = [texts[i] or " " for i in order[start:start + batch_size]]
            enc = tokenizer(chunk, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            pooled = model.pool(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            pooled_parts.append(pooled.float().cpu())
            prob_parts.append(torch.softmax(model.head(pooled).float(), dim=-1).cpu())
    model.train(was_training)
    if not order:
        return torch.zeros((0, model.head.in_features)), torch.zeros((0, model.head.out_features))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(pooled_parts)[inverse], torch.cat(prob_parts)[inverse]


def save_sentiment_model(model: SentimentModel, tokenizer: Any, folder: Path, *, labels: tuple[str, ...],
                         max_length: int, knn: KnnMemory | None = None) -> None:
    """Write body (transformers format), tokenizer, head, optional k-NN memory and `classifier.json` to `folder`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    model.body.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(folder / HEAD_FILE))
    meta: dict[str, Any] = {"labels": list(labels), "pooling": model.pooling, "max_length": max_length}
    if knn is not None:
        save_file({"vectors": knn.vectors.half().contiguous(), "labels": knn.labels.contiguous()},
                  str(folder / KNN_FILE))
        meta["knn"] = knn.meta()
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def load_sentiment_model(folder: Path, device: str = "cpu") -> tuple[SentimentModel, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, classifier.json) from a folder written by `save_sentiment_model`."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    meta = json.loads((folder / CONFIG_FILE).read_text())
    body = AutoModel.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = SentimentModel(body, len(meta["labels"]), pooling=meta.get("pooling", "mean"))
    model.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    model.to(device).eval()
    if meta.get("knn") and (folder / KNN_FILE).is_file():
        saved = load_file(str(folder / KNN_FILE))
        knn = meta["knn"]
        meta["knn_memory"] = KnnMemory(saved["vectors"].float(), saved["labels"].long(), k=int(knn["k"]),
                                       mix=float(knn["mix"]), temperature=float(knn["temperature"]))
    return model, tokenizer, meta


def copy_tree_atomic(src: Path, dst: Path) -> None:
    """Copy a folder to `dst` via a sibling temp folder and one rename."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    os.replace(tmp, dst)
