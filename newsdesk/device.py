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
def faiss_gpu_available() -> bool:
    """True when the installed FAISS build has GPU support and sees at least one GPU."""
    try:
        import faiss

        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001
        return False
