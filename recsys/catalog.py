"""Import and upsert items and interactions (CSV, JSONL, MIND tsv); rejected rows are reported with file and line."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from tqdm import tqdm

from newsdesk import inputs
from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput, NotFound
from newsdesk.interactions import INTERACTION_KINDS, is_positive
from recsys.tables import Interaction, Item
from recsys.text import text_hash

log = logging.getLogger(__name__)

BATCH = 2000
MAX_REJECTIONS_KEPT = 1000
SAFE_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
ITEM_ALIASES = {"id": "item_id", "news_id": "item_id", "genres": "category", "genre": "category",
                "abstract": "description", "overview": "description", "link": "url", "date": "published_at"}
INTERACTION_ALIASES = {"user": "user_id", "userid": "user_id", "item": "item_id", "movieid": "item_id",
                       "news_id": "item_id", "timestamp": "ts", "time": "ts"}
MIND_NEWS_ID = re.compile(r"^N\d+$")
csv.field_size_limit(10_000_000)


@dataclass
class Rejection:
    """A row that was not imported: where and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did: counts, rejected rows by line and (interactions) items not in the catalog."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    rejected_total: int = 0
    unknown_items: int = 0
    unknown_examples: list[str] = field(default_factory=list)
    duplicates: int = 0
    positives: int = 0
    empty_files: list[str] = field(default_factory=list)  # files without a single row (said, not silent)

    def reject(self, file: str, line: int, reason: str) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_REJECTIONS_KEPT:
            self.rejected.append(Rejection(file, line, reason))

    def to_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected_total, "rejections": [str(r) for r in self.rejected],
                "unknown_items": self.unknown_items, "unknown_examples": self.unknown_examples,
                "duplicates": self.duplicates, "positives": self.positives, "empty_files": self.empty_files}

    def __str__(self) -> str:
        text = f"imported {self.imported}, updated {self.updated}, unchanged {self.unchanged}, " \
               f"rejected {self.rejected_total}"
        if self.unknown_items or self.duplicates:
            text += f", unknown items {self.unknown_items}, duplicates {self.duplicates}"
        return text


# Reading files ---------------------------------------------------------------------------------------------------


def _open_lines(path: Path) -> list[str]:
    try:
        first = [line for _, line in itertools.islice(_lines(path), 2)]
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from exc
    return first + [""] * (2 - len(first))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, line) of a UTF-8 text file (a leading BOM dropped); a line that is not UTF-8 ends the import (the
    caller's transaction rolls back, so nothing is half-imported).

    Raises:
        InvalidInput: `FILE:LINE: not UTF-8 text`.
    """
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{path}:{number}: not UTF-8 text (byte {exc.start} of the line; a binary file?)",
                                   {"path": str(path), "line": number}) from exc
            yield number, line


def _bad_fields(record: dict[str, str]) -> str:
    """Why a record cannot be stored (a NUL byte or a lone surrogate in a field), or ''."""
    for key, value in record.items():
        problem = inputs.bad_char(key) or inputs.bad_char(value)
        if problem:
            return f"field {inputs.scrub(key)[:40]!r} contains a {problem}"
    return ""


def _detect(path: Path, mind_fields: int) -> str:
    """'jsonl', 'mind' (tab-separated MIND file without header) or 'csv'."""
    first = _open_lines(path)[0]
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or first.lstrip().startswith("{"):
        return "jsonl"
    if first.count("\t") == mind_fields - 1 and "," not in first.split("\t")[0]:
        return "mind"
    return "csv"


def _records(path: Path, aliases: dict[str, str]) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """(line, normalised record or None, error) for each CSV/JSONL row."""
    kind = "jsonl" if _detect(path, 0) == "jsonl" else "csv"
    if kind == "jsonl":
        for number, line in _lines(path):
            if not line.strip():
                continue
            try:
                obj = inputs.check_json_depth(json.loads(line), "the line", max_depth=8)
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON ({exc.msg})"
                continue
            except (RecursionError, ValueError, InvalidInput):  # nested too deep, a 5,000-digit number
                yield number, None, "JSON nested too deep or a number too long"
                continue
            if not isinstance(obj, dict):
                yield number, None, "not a JSON object"
                continue
            record = _normalise(obj, aliases)
            problem = _bad_fields(record)
            yield number, None if problem else record, problem
        return
    reader = csv.DictReader(line for _, line in _lines(path))
    try:
        if not reader.fieldnames:
            return
        start = 2
        for row in reader:
            if None in row:
                yield start, None, "more fields than the header"
            else:
                record = _normalise(row, aliases)
                problem = _bad_fields(record)
                yield start, None if problem else record, problem
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not CSV ({exc})",
                           {"path": str(path), "line": reader.line_num}) from exc


def _normalise(obj: dict[str, Any], aliases: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in obj.items():
        if key is None:
            continue
        name = str(key).strip().lower()
        name = aliases.get(name, name)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out.setdefault(name, "" if value is None else str(value).strip())
    return out


def parse_time(value: str) -> datetime | None:
    """Unix seconds or ISO 8601 (any offset) -> naive UTC; empty -> None. Raises ValueError when unparsable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed
    return datetime.fromtimestamp(number, tz=timezone.utc).replace(tzinfo=None)


# Items -----------------------------------------------------------------------------------------------------------


def _item_rows(path: Path, report: ImportReport) -> Iterator[dict[str, Any]]:
    """Validated item dicts from one file; bad rows go to the report."""
    name = str(path)
    if _detect(path, 8) == "mind":
        source = "mind"
        records = _mind_news(path)
    else:
        source = path.stem[:64]
        records = _records(path, ITEM_ALIASES)
    for line, rec, error in records:
        if rec is None:
            report.reject(name, line, error)
            continue
        item_id, title = rec.get("item_id", ""), rec.get("title", "")
        if not item_id:
            report.reject(name, line, "missing item_id")
            continue
        if len(item_id) > 128:
            report.reject(name, line, "item_id longer than 128 characters")
            continue
        if not title:
            report.reject(name, line, f"missing title for item {item_id}")
            continue
        try:
            published = parse_time(rec.get("published_at", ""))
        except (ValueError, OverflowError, OSError):
            report.reject(name, line, f"unparsable published_at {rec.get('published_at')!r}")
            continue
        url = rec.get("url") or None
        if url is not None and not SAFE_URL.match(url):  # javascript:, data: and the like never reach an href
            report.reject(name, line, f"url of item {item_id} is not http(s): {url[:40]!r}")
            continue
        category = rec.get("category", "")[:128]
        description = rec.get("description", "")
        yield {"item_id": item_id, "title": title, "description": description, "category": category,
               "tags": rec.get("tags", ""), "url": url, "published_at": published,
               "source": rec.get("source", "")[:64] or source, "text_hash": text_hash(title, category, description)}


def _mind_news(path: Path) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """MIND news.tsv: id, category, subcategory, title, abstract, url, title entities, abstract entities."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        if inputs.bad_char(line):
            yield number, None, f"the line contains a {inputs.bad_char(line)}"
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 6:
            yield number, None, f"expected 8 tab-separated MIND fields, found {len(parts)}"
            continue
        yield number, {"item_id": parts[0].strip(), "category": parts[1].strip(), "tags": parts[2].strip(),
                       "title": parts[3].strip(), "description": parts[4].strip(), "url": parts[5].strip()}, ""


_COMPARED = ("title", "description", "category", "tags", "url", "published_at", "source")


def _upsert_items(session: Session, batch: dict[str, dict[str, Any]], report: ImportReport) -> None:
    existing = {row.item_id: row for row in session.execute(
        sa.select(Item.item_id, *[getattr(Item, c) for c in _COMPARED]).where(Item.item_id.in_(list(batch))))}
    now = utcnow()
    inserts, updates = [], []
    for item_id, row in batch.items():
        old = existing.get(item_id)
        if old is None:
            inserts.append({**row, "created_at": now, "updated_at": now})
        elif any(getattr(old, c) != row[c] for c in _COMPARED):
            updates.append({**row, "updated_at": now})
        else:
            report.unchanged += 1
    if inserts:
        session.execute(sa.insert(Item), inserts)
    if updates:
        session.execute(sa.update(Item), updates)
    report.imported += len(inserts)
    report.updated += len(updates)


def _note_empty(path: Path, rows: int, report: ImportReport) -> None:
    if rows == 0:
        log.warning("%s has no rows (an empty file, or only a header?)", path)
        report.empty_files.append(str(path))


def import_items(session: Session, paths: Iterable[str | Path]) -> ImportReport:
    """Upsert items from CSV/JSONL/MIND news.tsv files by item_id; changed text makes the item's vector stale.

    Raises:
        NotFound: a file does not exist.
        InvalidInput: a file is not UTF-8 text.
    """
    report = ImportReport()
    for raw in paths:
        path = Path(raw)
        batch: dict[str, dict[str, Any]] = {}
        rejected_before, rows = report.rejected_total, 0
        with tqdm(desc=f"items {path.name}", unit="rows", disable=None) as bar:
            for row in _item_rows(path, report):
                batch[row["item_id"]] = row  # the last row for an id wins
                rows += 1
                bar.update()
                if len(batch) >= BATCH:
                    _upsert_items(session, batch, report)
                    batch = {}
            if batch:
                _upsert_items(session, batch, report)
        session.flush()
        _note_empty(path, rows + report.rejected_total - rejected_before, report)
    log.info("catalog import: %s", report)
    return report


# Interactions ----------------------------------------------------------------------------------------------------

Key = tuple[str, str, str, datetime, "str | None"]


def _interaction_rows(path: Path, report: ImportReport) -> Iterator[dict[str, Any]]:
    name = str(path)
    if _detect(path, 5) == "mind":
        yield from _mind_behaviours(path, report)
        return
    for line, rec, error in _records(path, INTERACTION_ALIASES):
        if rec is None:
            report.reject(name, line, error)
            continue
        user_id, item_id = rec.get("user_id", ""), rec.get("item_id", "")
        if not user_id or not item_id:
            report.reject(name, line, "missing user_id" if not user_id else "missing item_id")
            continue
        if len(user_id) > 128 or len(item_id) > 128:
            report.reject(name, line, "user_id or item_id longer than 128 characters")
            continue
        if len(rec.get("impression_id", "")) > 64:
            report.reject(name, line, "impression_id longer than 64 characters")
            continue
        rating = None
        if rec.get("rating", ""):
            try:
                rating = float(rec["rating"])
            except ValueError:
                report.reject(name, line, f"rating {rec['rating'][:40]!r} is not a number")
                continue
            if not math.isfinite(rating):
                report.reject(name, line, f"rating {rec['rating'][:40]!r} is not a finite number")
                continue
        kind = rec.get("kind", "") or ("rating" if rating is not None else "click")
        if kind not in INTERACTION_KINDS:
            report.reject(name, line, f"unknown kind {kind!r} (expected one of {', '.join(INTERACTION_KINDS)})")
            continue
        if kind == "rating" and rating is None:
            report.reject(name, line, "kind 'rating' without a rating")
            continue
        try:
            ts = parse_time(rec.get("ts", "")) or utcnow()
        except (ValueError, OverflowError, OSError):
            report.reject(name, line, f"unparsable timestamp {rec.get('ts')!r}")
            continue
        yield {"user_id": user_id, "item_id": item_id, "kind": kind, "rating": rating, "ts": ts,
               "source": rec.get("source", "")[:32] or path.stem[:32],
               "impression_id": rec.get("impression_id") or None}


def _mind_behaviours(path: Path, report: ImportReport) -> Iterator[dict[str, Any]]:
    """MIND behaviors.tsv: impression id, user, time, history (clicks), impressions `N1-1 N2-0` (label 1 = click)."""
    name = str(path)
    history_seen: set[tuple[str, str]] = set()
    for number, line in _lines(path):
        if not line.strip():
            continue
        if inputs.bad_char(line):
            report.reject(name, number, f"the line contains a {inputs.bad_char(line)}")
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 5 or not parts[1]:
            report.reject(name, number, f"expected 5 tab-separated MIND behaviour fields, found {len(parts)}")
            continue
        impression_id, user_id, when, history, shown = parts
        if len(impression_id) > 64 or len(user_id) > 128:
            report.reject(name, number, "impression id over 64 or user id over 128 characters")
            continue
        try:
            ts = datetime.strptime(when.strip(), "%m/%d/%Y %I:%M:%S %p")
        except ValueError:
            report.reject(name, number, f"unparsable time {when!r}")
            continue
        labels = []
        for token in shown.split():
            item_id, _, label = token.rpartition("-")
            if not MIND_NEWS_ID.match(item_id) or label not in ("0", "1"):
                labels = None
                break
            labels.append((item_id, label == "1"))
        if labels is None:
            report.reject(name, number, "impressions must look like N123-1 or N123-0")
            continue
        for item_id in history.split():
            if (user_id, item_id) not in history_seen:
                history_seen.add((user_id, item_id))
                yield {"user_id": user_id, "item_id": item_id, "kind": "click", "rating": None, "ts": ts,
                       "source": "mind-history", "impression_id": None}
        for item_id, clicked in labels:
            yield {"user_id": user_id, "item_id": item_id, "kind": "impression", "rating": None, "ts": ts,
                   "source": "mind", "impression_id": impression_id}
            if clicked:
                yield {"user_id": user_id, "item_id": item_id, "kind": "click", "rating": None, "ts": ts,
                       "source": "mind", "impression_id": impression_id}


def _key(row: Any) -> Key:
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    if get("source") == "mind-history":  # history clicks repeat in every impression of a user: one per item
        return (get("user_id"), get("item_id"), "click", datetime.min, None)
    return (get("user_id"), get("item_id"), get("kind"), get("ts"), get("impression_id"))


def _insert_interactions(session: Session, batch: list[dict[str, Any]], report: ImportReport,
                         positive_rating: float) -> None:
    users = list({row["user_id"] for row in batch})
    existing = {_key(r) for r in session.execute(sa.select(
        Interaction.user_id, Interaction.item_id, Interaction.kind, Interaction.ts, Interaction.impression_id,
        Interaction.source).where(Interaction.user_id.in_(users)))}
    fresh = []
    for row in batch:
        key = _key(row)
        if key in existing:
            report.duplicates += 1
            continue
        existing.add(key)
        fresh.append(row)
        if is_positive(row["kind"], row["rating"], positive_rating):
            report.positives += 1
    if fresh:
        session.execute(sa.insert(Interaction), fresh)
    report.imported += len(fresh)


def import_interaction_files(session: Session, paths: Iterable[str | Path], positive_rating: float) -> ImportReport:
    """Insert interactions from CSV (user_id,item_id[,rating][,timestamp][,kind]) or MIND behaviors.tsv files.

    Rows naming an item that is not in the catalog are counted in `unknown_items` (with examples) and skipped;
    rows already stored (same user, item, kind, time, impression) are counted as duplicates.

    Raises:
        NotFound: a file does not exist.
        InvalidInput: a file is not UTF-8 text.
    """
    known = set(session.scalars(sa.select(Item.item_id)))
    report = ImportReport()
    unknown: set[str] = set()
    for raw in paths:
        path = Path(raw)
        batch: list[dict[str, Any]] = []
        rejected_before, rows = report.rejected_total, 0
        with tqdm(desc=f"interactions {path.name}", unit="rows", disable=None) as bar:
            for row in _interaction_rows(path, report):
                rows += 1
                bar.update()
                if row["item_id"] not in known:
                    report.unknown_items += 1
                    if len(unknown) < 10 and row["item_id"] not in unknown:
                        unknown.add(row["item_id"])
                        report.unknown_examples.append(row["item_id"])
                    continue
                batch.append(row)
                if len(batch) >= BATCH * 5:
                    _insert_interactions(session, batch, report, positive_rating)
                    batch = []
            if batch:
                _insert_interactions(session, batch, report, positive_rating)
        session.flush()
        _note_empty(path, rows + report.rejected_total - rejected_before, report)
    if report.unknown_items:
        log.warning("%d interactions name items not in the catalog (e.g. %s); they were skipped",
                    report.unknown_items, ", ".join(report.unknown_examples[:5]))
    log.info("interaction import: %s", report)
    return report
