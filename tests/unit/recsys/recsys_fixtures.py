"""recsys test helpers: a deterministic keyword encoder, a 20-item catalog in two topics, CSV writing."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

AXES = ("oil", "bank", "chip", "film", "rain")
DIM = 16

# 20 items: 8 energy (oil), 8 tech (chip), 2 banking, 2 weather; two energy and one tech item have no interactions.
ITEMS = [
    *[(f"e{i}", f"Oil price story {i}", "energy", f"oil barrels crude oil market {i}") for i in range(8)],
    *[(f"t{i}", f"Chip maker news {i}", "tech", f"chip semiconductor chip fab {i}") for i in range(8)],
    ("b0", "Bank rates rise", "banking", "bank lending bank"),
    ("b1", "Bank merger talks", "banking", "bank deal"),
    ("w0", "Rain expected", "weather", "rain storm"),
    ("w1", "Heavy rain floods", "weather", "rain flood"),
]


class FakeEncoder:
    """Vectors from keyword counts on fixed axes plus a small per-text hash component (deterministic)."""

    def encode(self, texts, batch_size: int = 32, normalize_embeddings: bool = True, convert_to_numpy: bool = True,
               show_progress_bar: bool = False, **_: object) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            words = text.lower().replace(".", " ").split()
            for axis, key in enumerate(AXES):
                out[row, axis] = sum(1 for w in words if w.startswith(key))
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            out[row, len(AXES):] = np.random.default_rng(seed).normal(scale=0.15, size=DIM - len(AXES))
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
