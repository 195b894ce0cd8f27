"""Reads labelled texts (CSV/JSONL, errors name the row), texts to classify, and interactions for behaviour pairs."""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import io
import json
import random
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TextIO

import sqlalchemy as sa
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from newsdesk import inputs
from newsdesk.errors import InvalidInput
from newsdesk.interactions import is_positive, positive_clause

# recsys's `interactions` table as finetune reads it (the data contract in docs/architecture.md; no recsys import)
INTERACTIONS = sa.table("interactions", sa.column("id"), sa.column("user_id"), sa.column("item_id"), sa.column("ts"),
                        sa.column("kind"), sa.column("rating"))

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
csv.field_size_limit(10_000_000)


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


@dataclass
class TaskData:
    """One classifier task's rows for a fine-tune: training rows, dev rows and the label set (head order)."""

    train: list[LabelledText]
    dev: list[LabelledText]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Positive:
    """A like: `user_id` liked `item_id` at `ts`."""

    user_id: str
    item_id: str
    ts: datetime


# Labelled texts --------------------------------------------------------------------------------------------------


def _lines(path: Path, handle: IO[Any]) -> Iterator[str]:
    """The handle's lines as text; bytes are decoded line by line, so a line that is not UTF-8 is named.

    Raises:
        InvalidInput: `FILE:LINE: not UTF-8 text`.
    """
    for lineno, line in enumerate(handle, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"{path}:{lineno}: not UTF-8 text (a binary file?)",
                                   {"file": str(path), "line": lineno}) from None
        yield line


def _checked(path: Path, lineno: int, record: dict[str, Any]) -> dict[str, Any]:
    """`record` when its strings are storable text (no NUL byte, no lone surrogate), at most 8 levels deep."""
    try:
        return inputs.check_json(record, "the row", max_depth=8)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}:{lineno}: {exc.message}", {"file": str(path), "line": lineno}) from None


def _records(path: Path, handle: IO[Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, record) from a CSV (header row) or JSONL handle (text or binary); line numbers are 1-based.

    Raises:
        InvalidInput: a line that is not UTF-8, not JSON, too deep, or holds a NUL byte or a lone surrogate.
    """
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for lineno, line in enumerate(_lines(path, handle), start=1):
            if not line.strip():
                continue
            where = {"file": str(path), "line": lineno}
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{lineno}: not valid JSON ({exc.msg})", where) from None
            except (RecursionError, ValueError):
                raise InvalidInput(f"{path}:{lineno}: JSON nested too deep or a number too long", where) from None
            if not isinstance(obj, dict):
                raise InvalidInput(f"{path}:{lineno}: expected a JSON object", where)
            yield lineno, _checked(path, lineno, obj)
        return
    reader = csv.DictReader(_lines(path, handle))
    try:
        if not reader.fieldnames:
            return
        for record in reader:
            yield reader.line_num, _checked(path, reader.line_num, {k: v for k, v in record.items() if k is not None})
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not CSV ({exc})",
                           {"file": str(path), "line": reader.line_num}) from None


def read_labelled(paths: Iterable[str | Path], labels: tuple[str, ...] | None = LABELS) -> list[LabelledText]:
    """All `text,label` rows of CSV/JSONL files, in order.

    `labels`: the allowed label set (sentiment labels are matched case-insensitively, as lower case); None accepts
    any non-empty label as written (a task whose label set comes from its training data, such as topic).

    Raises:
        InvalidInput: a missing/empty file, a missing column, an empty text, an empty or unknown label (naming file
            and line).
    """
    rows: list[LabelledText] = []
    lower = labels is not None and all(label == label.lower() for label in labels)
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file", {"file": str(path)})
        before = len(rows)
        with path.open("rb") as handle:
            for lineno, rec in _records(path, handle):
                where = {"file": str(path), "line": lineno}
                if "text" not in rec or "label" not in rec:
                    raise InvalidInput(f"{path}:{lineno}: needs the fields text and label", where)
                text = str(rec["text"] or "").strip()
                label = str(rec["label"] if rec["label"] is not None else "").strip()
                label = label.lower() if lower else label
                if not text:
                    raise InvalidInput(f"{path}:{lineno}: empty text", where)
                if not label:
                    raise InvalidInput(f"{path}:{lineno}: empty label", where)
                if labels is not None and label not in labels:
                    raise InvalidInput(f"{path}:{lineno}: unknown label {rec['label']!r} (expected one of "
                                       f"{', '.join(labels)})", where)
                rows.append(LabelledText(text, label))
        if len(rows) == before:
            raise InvalidInput(f"{path}: no labelled rows (empty file?)", {"file": str(path)})
    return rows


def label_set(rows: Iterable[LabelledText]) -> tuple[str, ...]:
    """The sorted distinct labels of rows (a task's label set when it comes from the training data)."""
    return tuple(sorted({r.label for r in rows}))


def read_texts(source: str | Path, stdin: TextIO | None = None) -> list[str]:
    """Texts to classify from a CSV (column `text`), a JSONL file (`{"text": ...}`), either gzipped (`.gz`), or `-`
    (stdin, either format).

    Raises:
        InvalidInput: a missing file, a missing `text` field or a non-string text (naming the line).
    """
    if str(source) == "-":
        stream = stdin or sys.stdin
        content: bytes = getattr(stream, "buffer", None).read() if hasattr(stream, "buffer") else \
            stream.read().encode("utf-8", errors="surrogateescape")
        first = content.lstrip()[:1]
        path = Path("stdin.jsonl" if first == b"{" else "stdin.csv")
        handle: IO[Any] = io.BytesIO(content)
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file", {"file": str(path)})
        if path.suffix.lower() == ".gz":  # x.jsonl.gz / x.csv.gz: the format is the name's inner suffix
            handle, path = gzip.open(path, "rb"), path.with_suffix("")  # noqa: SIM115 - closed by the with below
        else:
            handle = path.open("rb")
    texts: list[str] = []
    with handle:
        for lineno, rec in _records(path, handle):
            value = rec.get("text")
            if not isinstance(value, str):
                raise InvalidInput(f"{path}:{lineno}: needs a string field text", {"file": str(path), "line": lineno})
            texts.append(value)
    return texts


_LINK = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[^0-9a-z$%]+")


def group_key(text: str) -> str:
    """The text with links removed, entities unescaped, lower-cased and spacing/punctuation collapsed: tweets that
    differ only in a t.co link (templates, re-posts) get one key."""
    return _NON_WORD.sub(" ", html.unescape(_LINK.sub(" ", text)).lower()).strip()


def split_dev(rows: list[LabelledText], fraction: float, seed: int) -> tuple[list[LabelledText], list[LabelledText]]:
    """(train, dev): about `fraction` of each label held out, reproducibly, whole groups at a time.

    Rows with the same `group_key` (near-duplicates differing in a link, say) always land on the same side, so dev
    does not score texts the model has seen in another spelling; a group counts under its most frequent label.
    """
    rng = random.Random(seed)
    groups: dict[str, list[LabelledText]] = defaultdict(list)
    for row in rows:
        groups[group_key(row.text)].append(row)
    by_label: dict[str, list[list[LabelledText]]] = defaultdict(list)
    for members in groups.values():
        by_label[Counter(r.label for r in members).most_common(1)[0][0]].append(members)
    train, dev = [], []
    for label in sorted(by_label):
        label_groups = by_label[label][:]
        rng.shuffle(label_groups)
        size = sum(len(g) for g in label_groups)
        target = max(1, round(size * fraction)) if len(label_groups) > 1 else 0
        taken = 0
        for members in label_groups:
            if taken < target:
                dev.extend(members)
                taken += len(members)
            else:
                train.extend(members)
    return train, dev


def file_fingerprint(path: str | Path, labels: tuple[str, ...] | None = LABELS) -> dict[str, Any]:
    """sha256, size and row counts (per label when the file is labelled with `labels`; None: any) of a data file."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info: dict[str, Any] = {"path": str(path.resolve()), "sha256": digest, "bytes": path.stat().st_size}
    try:
        rows = read_labelled([path], labels)
        info["rows"] = len(rows)
        info["labels"] = dict(Counter(r.label for r in rows))
    except InvalidInput:
        gz = path.suffix.lower() == ".gz"
        inner = path.with_suffix("") if gz else path
        opener = gzip.open if gz else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            info["rows"] = max(0, sum(1 for _ in handle) - (0 if inner.suffix == ".jsonl" else 1))
    return info


# Items and interactions --------------------------------------------------------------------------------------------


def item_text(title: str | None, category: str | None, description: str | None) -> str:
    """The text an encoder sees for an item: `title. category/genres. description` (empty parts left out)."""
    parts = []
    for part in (title, (category or "").replace("|", ", "), description):
        part = (part or "").strip()
        if part:
            parts.append(part.rstrip(". ") if part != description else part)
    return ". ".join(parts)


def load_item_texts(session: Session) -> dict[str, str]:
    """item_id -> item text for every item in the `items` table (recsys's table, read with plain SQL)."""
    rows = session.execute(sql("SELECT item_id, title, category, description FROM items ORDER BY item_id"))
    return {r[0]: item_text(r[1], r[2], r[3]) for r in rows}


def load_positives(session: Session, positive_rating: float) -> list[Positive]:
    """Likes from the `interactions` table (a click, or a rating >= `positive_rating`), by user then time."""
    t = INTERACTIONS.c
    rows = session.execute(sa.select(t.user_id, t.item_id, t.ts)
                           .where(positive_clause(t.kind, t.rating, positive_rating)).order_by(t.user_id, t.ts, t.id))
    return [Positive(r[0], r[1], _as_datetime(r[2])) for r in rows]


def count_positives(session: Session, positive_rating: float) -> int:
    """How many likes the `interactions` table holds (for the "enough new data" check)."""
    t = INTERACTIONS.c
    return int(session.scalar(sa.select(sa.func.count()).select_from(INTERACTIONS)
                              .where(positive_clause(t.kind, t.rating, positive_rating))) or 0)


def read_interactions_file(path: str | Path, positive_rating: float) -> list[Positive]:
    """Likes from a CSV `user_id,item_id[,rating][,kind][,timestamp|ts]` (MovieLens style), by user then time.

    Raises:
        InvalidInput: missing file/columns or a bad rating/timestamp (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file", {"file": str(path)})
    out: list[Positive] = []
    with path.open("rb") as handle:
        for lineno, rec in _records(path, handle):
            where = {"file": str(path), "line": lineno}
            if not rec.get("user_id") or not rec.get("item_id"):
                raise InvalidInput(f"{path}:{lineno}: needs user_id and item_id", where)
            kind = (rec.get("kind") or ("rating" if rec.get("rating") not in (None, "") else "click")).strip()
            try:
                rating = float(rec["rating"]) if rec.get("rating") not in (None, "") else None
                ts = _as_datetime(rec.get("timestamp") or rec.get("ts") or 0)
            except (TypeError, ValueError, OverflowError, OSError) as exc:
                raise InvalidInput(f"{path}:{lineno}: bad rating or timestamp ({exc})", where) from exc
            if is_positive(kind, rating, positive_rating):
                out.append(Positive(str(rec["user_id"]), str(rec["item_id"]), ts))
    out.sort(key=lambda p: (p.user_id, p.ts))
    return out


def consecutive_pairs(positives: list[Positive], max_gap: int, max_pairs: int, seed: int) -> list[tuple[str, str]]:
    """(item, a later item) pairs liked in a row by the same user (within `max_gap` likes), sampled to `max_pairs`."""
    by_user: dict[str, list[str]] = defaultdict(list)
    for p in positives:
        by_user[p.user_id].append(p.item_id)
    pairs = []
    for items in by_user.values():
        for i, anchor in enumerate(items):
            for other in items[i + 1:i + 1 + max_gap]:
                if other != anchor:
                    pairs.append((anchor, other))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return pairs[:max_pairs]


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)
