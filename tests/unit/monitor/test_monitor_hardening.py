"""Issue #20 findings 2, 3 and 7 on the direct path: one bad item is dead-lettered, the good ones beside it stored."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from monitor import service
from monitor.tables import DeadLetter, Message
from newsdesk import db
from newsdesk.cli import cli
from newsdesk.settings import Settings

# Raw JSON lines (as a file or an HTTP body carries them): each bad in its own way.
BAD_LINES = [
    '{"id": "bad-ts", "text": "extreme offset", "ts": "0001-01-01T00:00:00+14:00"}',
    '{"id": "bad-ts2", "text": "extreme offset", "ts": "9999-12-31T23:59:59-14:00"}',
    '{"id": "x\\ud800", "text": "lone surrogate in the id"}',
    '{"id": "bad-text", "text": "lone \\udc00 surrogate"}',
    '{"id": "nul\\u0000id", "text": "NUL byte in the id"}',
    '{"id": "bad-meta", "text": "NUL in an extra field", "extra": "a\\u0000b"}',
    '{"id": "' + "l" * 300 + '", "text": "id over the column size"}',
    '{"id": "deep", "text": "deep extra", "extra": ' + "[" * 5000 + "]" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"id": 1' + "0" * 5000 + ', "text": "an id over the int-to-text limit"}',
]


def _good(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"id": f"g{start + i}", "text": f"ordinary message number {start + i} about $AAPL"})
            for i in range(n)]


def _interleaved(good: int) -> list[str]:
    lines, bad = [], list(BAD_LINES)
    for i, line in enumerate(_good(good)):
        lines.append(line)
        if i % 15 == 7 and bad:
            lines.append(bad.pop())
    return lines + bad


def _counts(url: str) -> tuple[int, int]:
    with db.session_scope(url) as session:
        return (session.scalar(select(func.count(Message.id))), session.scalar(select(func.count(DeadLetter.id))))


def _check_batch(url: str) -> None:
    lines = _interleaved(20)
    result = service.ingest_batch(url, None, lines, "test")
    assert result.stored == 20 and len(result.rejected) == len(BAD_LINES), result.rejected
    assert _counts(url) == (20, len(BAD_LINES))
    with db.session_scope(url) as session:  # every dead letter is readable (surrogates/NULs scrubbed)
        assert all(isinstance(p, str) for p in session.scalars(select(DeadLetter.payload)))


def test_bad_items_are_dead_lettered_and_the_rest_stored_on_sqlite(db_url: str) -> None:
    _check_batch(db_url)


@pytest.mark.postgres
def test_bad_items_are_dead_lettered_and_the_rest_stored_on_postgres(pg_url: str) -> None:
    _check_batch(pg_url)


def _replay(settings: Settings, path: Path, *args: str):
    env = {"NEWSDESK_HOME": str(settings.home), "NEWSDESK_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(cli, ["stream", "replay", str(path), *args], env=env)


def _check_replay(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    path.write_text("\n".join(_interleaved(150)) + "\n")
    result = _replay(settings, path)
    assert result.exit_code == 0, result.output
    assert "150 stored" in result.output and f"{len(BAD_LINES)} rejected" in result.output
    assert _counts(settings.database_url) == (150, len(BAD_LINES))


def test_replay_keeps_every_valid_line_on_sqlite(settings: Settings, tmp_path: Path) -> None:
    _check_replay(settings, tmp_path)


@pytest.mark.postgres
def test_replay_keeps_every_valid_line_on_postgres(pg_settings: Settings, tmp_path: Path) -> None:
    _check_replay(pg_settings, tmp_path)


def test_replay_of_a_truncated_gzip_keeps_what_was_read(settings: Settings, tmp_path: Path) -> None:
    full = tmp_path / "full.jsonl.gz"
    with gzip.open(full, "wt") as fh:
        fh.write("\n".join(_good(400)) + "\n")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    result = _replay(settings, cut)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "cut.jsonl.gz" in error_lines[0] and "gzip" in error_lines[0]
    stored, _ = _counts(settings.database_url)
    assert 100 < stored < 400
    with db.session_scope(settings.database_url) as session:  # the lines read are all there, in order
        ids = set(session.scalars(select(Message.source_id)))
    assert ids == {f"g{i}" for i in range(stored)}
