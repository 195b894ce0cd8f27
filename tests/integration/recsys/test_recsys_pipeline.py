"""recsys end to end with the real base encoder: import -> index -> recommend, the worker job, the CLI, PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsdesk import db
from newsdesk.cli import cli
from recsys import jobs, service

ITEMS = [
    ("m1", "Oil prices jump as OPEC cuts output", "energy"),
    ("m2", "Crude oil falls on rising inventories", "energy"),
    ("m3", "Natural gas futures slide on warm weather", "energy"),
    ("m4", "Refiners profit as gasoline demand rises", "energy"),
    ("m5", "OPEC meeting ends without a deal on oil supply", "energy"),
    ("m6", "Brent crude hits a two-year high", "energy"),
    ("s1", "Striker scores twice as United win the derby", "sports"),
    ("s2", "Tennis champion wins fifth title", "sports"),
    ("s3", "Basketball playoffs: underdogs force game seven", "sports"),
    ("s4", "Marathon runner breaks course record", "sports"),
    ("s5", "Coach sacked after a run of defeats", "sports"),
    ("s6", "Cricket team clinches the series in the final over", "sports"),
]


def _write(path: Path, header: list[str], rows: list) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    items = _write(tmp_path / "items.csv", ["item_id", "title", "category"], ITEMS)
    rows = [[f"fan{u}", f"s{1 + (u + i) % 4}", 1_700_000_000 + i] for u in range(4) for i in range(3)]
    rows += [[f"oiler{u}", f"m{1 + (u + i) % 4}", 1_700_000_000 + i] for u in range(4) for i in range(3)]
    rows += [["oiler0", "ghost", 1_700_000_100]]
    inter = _write(tmp_path / "clicks.csv", ["user_id", "item_id", "timestamp"], rows)
    return items, inter


def _pipeline(settings, url: str, files: tuple[Path, Path]) -> None:
    with db.session_scope(url) as session:
        assert service.import_catalog(session, [files[0]]).imported == len(ITEMS)
        report = service.import_interactions(session, [files[1]])
        assert report.unknown_items == 1 and report.imported == 24
    with db.session_scope(url) as session:
        status = service.rebuild_index(session, settings)
        assert (status.items, status.vectors, status.stale, status.indexed) == (12, 12, 0, 12)
    with db.session_scope(url) as session:
        recs = service.recommend_for_user(session, settings, "fan0", k=3)
        assert recs[0].item_id.startswith("s") and recs[0].reason.startswith("because you read")
        assert not {r.item_id for r in recs} & {"s1", "s2", "s3"}
        cold = service.recommend_for_user(session, settings, "newcomer", k=2, topics=["energy"])
        assert all(r.item_id.startswith("m") for r in cold)


def test_real_encoder_pipeline_on_sqlite(settings, db_url, files, base_encoder) -> None:
    _pipeline(settings, db_url, files)
    service.get_recommender(settings).invalidate()


@pytest.mark.postgres
def test_real_encoder_pipeline_on_postgres(pg_settings, files, base_encoder) -> None:
    _pipeline(pg_settings, pg_settings.database_url, files)
    service.get_recommender(pg_settings).invalidate()


@pytest.mark.postgres
def test_import_validation_on_postgres(pg_settings, tmp_path: Path) -> None:
    long_category = "x" * 300  # String(128) on PostgreSQL: truncated, not an error
    path = _write(tmp_path / "c.csv", ["item_id", "title", "category"],
                  [["a", "Alpha", long_category], ["", "No id", ""], ["a", "Alpha again", "y"]])
    with db.session_scope(pg_settings.database_url) as session:
        report = service.import_catalog(session, [path])
    assert (report.imported, report.rejected_total, report.rejected[0].line) == (1, 1, 3)
    with db.session_scope(pg_settings.database_url) as session:
        assert service.list_topics(session) == ["y"]  # the last row for an id wins


def test_worker_job_builds_then_syncs_new_items(settings, db_url, files, base_encoder, tmp_path: Path) -> None:
    with db.session_scope(db_url) as session:
        service.import_catalog(session, [files[0]])
    assert jobs.refresh_index(settings) == "rebuilt"
    assert jobs.refresh_index(settings) == "idle"
    extra = _write(tmp_path / "more.csv", ["item_id", "title", "category"],
                   [["m7", "Oil tanker rates soar", "energy"]])
    with db.session_scope(db_url) as session:
        service.import_catalog(session, [extra])
    assert jobs.refresh_index(settings) == "synced"
    with db.session_scope(db_url) as session:
        status = service.index_status(session, settings)
    assert (status.indexed, status.stale) == (13, 0)


def test_cli_import_index_recommend(settings, db_url, files, base_encoder, tmp_path: Path) -> None:
    runner = CliRunner()
    home = ["--home", str(settings.home), "--device", "cpu"]
    bad = _write(tmp_path / "bad.csv", ["item_id", "title"], [["z1", ""]])
    out = runner.invoke(cli, home + ["catalog", "import", str(files[0]), str(bad)])
    assert out.exit_code == 0, out.output
    assert "imported 12" in out.output and f"{bad}:2: missing title" in out.output
    out = runner.invoke(cli, home + ["interactions", "import", str(files[1])])
    assert "1 rows name items not in the catalog" in out.output
    assert runner.invoke(cli, home + ["index", "build"]).exit_code == 0
    out = runner.invoke(cli, home + ["index", "status", "--json"])
    assert json.loads(out.output.strip().splitlines()[-1])["indexed"] == 12
    users = tmp_path / "users.txt"
    users.write_text("fan1\noiler1\n")
    out = runner.invoke(cli, home + ["recommend", "--users", str(users), "--k", "2"])
    lines = [json.loads(x) for x in out.output.splitlines() if x.startswith("{")]
    assert [x["user_id"] for x in lines] == ["fan1", "oiler1"] and len(lines[0]["items"]) == 2
    assert lines[1]["items"][0]["item_id"].startswith("m")
    out = runner.invoke(cli, home + ["recommend", "--user", "fan1", "--users", str(users)])
    assert out.exit_code == 3 and "exactly one" in out.output
    test = _write(tmp_path / "test.csv", ["user_id", "item_id"], [["fan1", "s5"], ["oiler1", "m6"]])
    out = runner.invoke(cli, home + ["eval", "recsys", "--test", str(test), "--k", "5", "--json"])
    metrics = json.loads(out.output.strip().splitlines()[-1])
    assert metrics["users"] == 2 and 0.0 <= metrics["recall@5"] <= 1.0 and metrics["new_item_users"] == 2
    service.get_recommender(settings).invalidate()


def test_register_adds_the_interval_job(settings) -> None:
    import threading

    added = []

    class Scheduler:
        def add_job(self, func, trigger, **kwargs):
            added.append((func, trigger, kwargs))

    jobs.register(Scheduler(), settings, threading.Event())
    assert added == [(jobs.refresh_index, "interval",
                      {"seconds": jobs.INTERVAL_S, "args": [settings], "id": "recsys:refresh-index",
                       "name": "re-embed stale items / sync the item index", "replace_existing": True})]
    assert jobs.refresh_index(settings) in ("idle", "failed")  # no database tables yet or no items: never raises
