"""The held-out check set stored with a classifier version: labelled dev texts its inference paths are checked on."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CHECK_SET_FILE = "check_set.jsonl"
CHECK_SET_ROWS = 2000  # per task: a seeded sample beyond this (PhraseBank dev, 483 rows, is kept whole)


def save_check_set(folder: Path, rows_by_task: Mapping[str, Sequence[Any]], *, seed: int = 0) -> Path:
    """Write each task's dev rows (objects with .text and .label) as `check_set.jsonl` into a version folder."""
    path = folder / CHECK_SET_FILE
    with path.open("w", encoding="utf-8") as out:
        for task, rows in rows_by_task.items():
            picked = list(rows)
            if len(picked) > CHECK_SET_ROWS:
                picked = random.Random(seed).sample(picked, CHECK_SET_ROWS)
            for row in picked:
                out.write(json.dumps({"task": task, "text": row.text, "label": row.label}) + "\n")
    return path


def read_check_set(folder: Path) -> dict[str, list[tuple[str, str]]]:
    """Task -> [(text, gold label)] from a version folder ({} when it has none or it cannot be read)."""
    path = Path(folder) / CHECK_SET_FILE
    out: dict[str, list[tuple[str, str]]] = {}
    if not path.is_file():
        return out
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out.setdefault(str(row["task"]), []).append((str(row["text"]), str(row["label"])))
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return out
