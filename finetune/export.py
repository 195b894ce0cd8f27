"""Exports a classifier (encoder + heads) or a sentence encoder to ONNX, quantises it to int8, runs it on ONNX Runtime.

The graphs take `input_ids` and `attention_mask` and end where the torch path ends: a classifier graph gives one
probability output per head (a joint model's heads from one pass), an encoder graph the pooled sentence vector
(L2-normalised when the SentenceTransformer folder normalises). int8 is ONNX Runtime's dynamic quantisation
(uint8 activations, int8 weights: "U8S8"), whose activation scale is computed per tensor over the whole batch, so
`OnnxEngine` runs a quantised graph one text at a time: a text's label never depends on which texts share its batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

OPSET = 17
INPUTS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Int8Config:
    """One dynamic-quantisation recipe (ONNX Runtime `quantize_dynamic`): U8S8 always; the options differ."""

    name: str
    per_channel: bool = False
    reduce_range: bool = False  # 7-bit weights: avoids the u8*s8 pair-sum saturation of AVX2/AVX-512 without VNNI


INT8_CONFIGS = (Int8Config("int8"), Int8Config("int8-pc", per_channel=True), Int8Config("int8-rr", reduce_range=True),
                Int8Config("int8-pc-rr", per_channel=True, reduce_range=True))


def runtime_missing() -> str:
    """'' when onnxruntime and onnx import; else why not (the reason the torch path serves)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc.name}); `pip install 'newsdesk[onnx]'`"
    return ""


class _ClassifierGraph(nn.Module):
    """Encoder + pooling + every head's softmax: what `finetune.model.predict_probs` computes."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pooled = self.model.pool(input_ids, attention_mask)
        return tuple(torch.softmax(head(pooled), dim=-1) for head in self.model.heads.values())


class _EncoderGraph(nn.Module):
    """Transformer body + mean (or CLS-token) pooling + optional L2 normalisation: a SentenceTransformer's encode."""

    def __init__(self, body: nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.body, self.pooling, self.normalize = body, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            vec = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(vec, p=2, dim=1) if self.normalize else vec


def _eager(body: nn.Module) -> None:
    """Plain matmul-softmax attention in the graph (what ONNX Runtime's attention fusion recognises)."""
    if hasattr(body, "set_attn_implementation"):
        body.set_attn_implementation("eager")
    else:
        body.config._attn_implementation = "eager"


def _export(graph: nn.Module, outputs: Sequence[str], out: Path, vocab_size: int) -> Path:
    """Trace `graph` to `out` (dynamic batch and sequence axes), then fuse attention/LayerNorm/GELU offline."""
    ids = torch.randint(1000, min(vocab_size, 20000), (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch"} for name in outputs})
    raw = out.with_suffix(".raw.onnx")
    graph.eval()
    with torch.inference_mode():
        torch.onnx.export(graph, (ids, mask), str(raw), input_names=list(INPUTS), output_names=list(outputs),
                          dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    _optimize(raw, out, graph)
    raw.unlink()
    return out


def _optimize(raw: Path, out: Path, graph: nn.Module) -> None:
    """ONNX Runtime's BERT optimiser (fused Attention, SkipLayerNorm, Gelu); the raw graph when it cannot."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = next(m for m in graph.modules() if hasattr(m, "config") and hasattr(m.config, "hidden_size")).config
    try:
        optimized = optimize_model(str(raw), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=1)
        optimized.save_model_to_file(str(out))
    except (RuntimeError, ValueError, AttributeError) as exc:  # an unrecognised graph still runs unfused
        log.warning("ONNX graph fusion failed (%s); keeping the unfused graph", exc)
        shutil.copyfile(raw, out)


def export_classifier(model: Any, out: Path) -> Path:
    """Write `model` (a `finetune.model.ClassifierModel`) as an ONNX graph with one output per head, named after
    its task. Returns `out`."""
    _eager(model.body)
    return _export(_ClassifierGraph(model), list(model.tasks), out, int(model.config.vocab_size))


def export_encoder(st_model: Any, out: Path) -> Path:
    """Write a SentenceTransformer (Transformer -> Pooling(mean or cls) [-> Normalize]) as an ONNX graph with one
    output, `embedding`.

    Raises:
        ValueError: a module layout or pooling this graph does not reproduce (the caller keeps the torch path).
    """
    modules = list(st_model)
    names = [type(m).__name__ for m in modules]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        raise ValueError(f"cannot export a SentenceTransformer made of {names}")
    pooling = modules[1]
    mode = getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str()  # sentence-transformers 6 / 3
    if mode not in ("mean", "cls"):
        raise ValueError(f"cannot export {mode} pooling")
    body = modules[0].auto_model
    _eager(body)
    return _export(_EncoderGraph(body, mode, "Normalize" in names), ["embedding"], out,
                   int(body.config.vocab_size))


def quantize(src: Path, dst: Path, config: Int8Config) -> Path:
    """Dynamic int8 quantisation of `src`'s MatMul/Attention weights (U8S8, `config`'s options). Returns `dst`."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # fused ops (com.microsoft domain) defeat shape inference: their outputs are float32
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=config.per_channel,
                     reduce_range=config.reduce_range, op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    return dst


class OnnxEngine:
    """An ONNX Runtime session over tokenised texts: sorted by length, padded per batch, results in input order.

    `per_text` runs one text per call (no padding, no batch-mates): required for int8, whose activation scale is
    computed over the whole input tensor. Such calls are spread over `threads` sessions threads, one core each.
    """

    def __init__(self, path: Path, tokenizer: Any, max_length: int, *, per_text: bool = False,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path, self.tokenizer, self.max_length, self.per_text = Path(path), tokenizer, max_length, per_text
        self.threads = max(1, threads or len(os.sched_getaffinity(0)))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1 if per_text else self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
        """Output name -> (len(texts), ...) float32 array, in input order."""
        texts = [t or " " for t in texts]
        if not texts:
            return {name: np.zeros((0,) + tuple(self._width(name)), dtype=np.float32) for name in self.outputs}
        if self.per_text:
            return self._run_per_text(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for start in range(0, len(order), batch_size):
            feed = self._feed([texts[i] for i in order[start:start + batch_size]])
            for name, value in zip(self.outputs, self.session.run(self.outputs, feed)):
                parts[name].append(value)
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[np.asarray(order)] = np.arange(len(order))
        return {name: np.concatenate(chunks)[inverse].astype(np.float32) for name, chunks in parts.items()}

    def _width(self, name: str) -> list[int]:
        shape = next(o.shape for o in self.session.get_outputs() if o.name == name)
        return [d if isinstance(d, int) else 0 for d in shape[1:]]

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUTS}

    def _run_per_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        rows: list[list[np.ndarray] | None] = [None] * len(texts)

        def work(indices: range) -> None:
            for i in indices:
                feed = {name: np.asarray([enc[name][i]], dtype=np.int64) for name in INPUTS}
                rows[i] = self.session.run(self.outputs, feed)

        shards = [range(k, len(texts), self.threads) for k in range(min(self.threads, len(texts)))]
        workers = [threading.Thread(target=work, args=(shard,), daemon=True) for shard in shards[1:]]
        for w in workers:
            w.start()
        work(shards[0])
        for w in workers:
            w.join()
        return {name: np.concatenate([row[k] for row in rows]).astype(np.float32)  # type: ignore[index]
                for k, name in enumerate(self.outputs)}
