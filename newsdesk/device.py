"""Decides CPU or GPU once: for torch training/inference and for FAISS indexes."""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no GPU"
        return False


def resolve_device(preference: str = "auto") -> str:
    """'cuda' or 'cpu' for a preference of auto/cpu/cuda; asking for cuda without one falls back with a warning."""
    if preference == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if preference == "cuda":
        log.warning("device=cuda requested but no CUDA device is available; using CPU")
    return "cpu"


@functools.cache
def native_bf16(device: str) -> bool:
    """True when `device` ("cpu" or "cuda") computes bfloat16 in hardware: a GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (where emulated bfloat16 would be slower than float32)."""
    try:
        import torch

        if device == "cuda":
            return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check is not None and bool(check()) for check in checks)
    except Exception:  # noqa: BLE001 - an unknown build: assume not
        return False


@functools.cache
def faiss_gpu_available() -> bool:
    """True when the installed FAISS build has GPU support and sees at least one GPU."""
    try:
        import faiss

        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001
        return False
