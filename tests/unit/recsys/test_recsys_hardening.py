"""Issue #20 findings 3 and 7 for the importers: bad rows rejected by line, unreadable files one Error line, exit 3,
nothing half-imported (on PostgreSQL too, where a NUL byte or an over-long impression id used to crash the import)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsdesk import db
from newsdesk.cli import cli
from newsdesk.settings import Settings
from recsys.tables import Interaction, Item


def _run(settings: Settings, *args: str):
    return CliRunner().invoke(cli, list(args), env={"NEWSDESK_HOME": str(settings.home),
                                                    "NEWSDESK_DATABASE_URL": settings.database_url})


def _count(url: str, table: type) -> int:
    with db.session_scope(url) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(table))


def _bad_catalog(tmp_path: Path) -> Path:
    good = [json.dumps({"item_id": f"i{n}", "title": f"Title {n}", "url": f"https://example.com/{n}"})
            for n in range(3)]
    bad = ['{"item_id": "nul", "title": "a\\u0000b"}', '{"item_id": "sur\\ud800", "title": "x"}',
           '{"item_id": "deep", "title": "x", "tags": ' + "[" * 50_000 + "]" * 50_000 + "}",
           '{"item_id": "js", "title": "x", "url": "javascript:alert(1)"}',
           '{"item_id": "data", "title": "x", "url": "data:text/html,<b>x</b>"}']
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(good[:1] + bad + good[1:]) + "\n")
    return path


def _check_rows(settings: Settings, tmp_path: Path) -> None:
    result = _run(settings, "catalog", "import", str(_bad_catalog(tmp_path)))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert _count(settings.database_url, Item) == 3
    interactions = tmp_path / "ratings.csv"
    interactions.write_text("user_id,item_id,rating,impression_id\nu1,i0,4,imp1\nu2,i1,3," + "x" * 65 + "\n"
                            "u3,i2,nan,\nu4,i2,inf,\nu5,i2,5,\n")
    result = _run(settings, "interactions", "import", str(interactions))
    assert result.exit_code == 0, result.output
    with db.session_scope(settings.database_url) as session:
        assert sorted(session.scalars(sa.select(Interaction.user_id))) == ["u1", "u5"]


def test_bad_rows_are_rejected_by_line_on_sqlite(settings: Settings, db_url: str, tmp_path: Path) -> None:
    _check_rows(settings, tmp_path)


@pytest.mark.postgres
def test_bad_rows_are_rejected_by_line_on_postgres(pg_settings: Settings, tmp_path: Path) -> None:
    _check_rows(pg_settings, tmp_path)


@pytest.mark.parametrize("command", ["catalog", "interactions"])
def test_a_file_that_is_not_utf8_is_one_error_line_and_nothing_imported(settings: Settings, db_url: str,
                                                                        tmp_path: Path, command: str) -> None:
    _run(settings, "catalog", "import", str(_bad_catalog(tmp_path)))
    before = (_count(settings.database_url, Item), _count(settings.database_url, Interaction))
    path = tmp_path / "mixed.csv"
    header = b"item_id,title\n" if command == "catalog" else b"user_id,item_id,rating\n"
    rows = b"".join(b"n%d,i0,3\n" % n if command != "catalog" else b"n%d,Title %d\n" % (n, n) for n in range(300))
    path.write_bytes(header + rows + b"\xff\xfe\x00binary\x89PNG\n")
    result = _run(settings, command, "import", str(path))
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{path}:302:" in errors[0] and "UTF-8" in errors[0], result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert (_count(settings.database_url, Item), _count(settings.database_url, Interaction)) == before


def test_an_empty_file_is_a_warning_not_a_silent_imported_0(settings: Settings, db_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("item_id,title\n")
    result = _run(settings, "catalog", "import", str(empty))
    assert result.exit_code == 0
    assert f"Warning: {empty} has no rows" in result.output
