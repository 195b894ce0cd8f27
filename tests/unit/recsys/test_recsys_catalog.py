"""Catalog and interaction import: validation by line, upserts, staleness, MIND formats, live events."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from recsys_fixtures import write_csv

from newsdesk.errors import InvalidInput, NotFound
from recsys import service
from recsys.embed import count_stale, embed_stale
from recsys.tables import Interaction, Item

DEMO = Path(__file__).resolve().parents[3] / "newsdesk" / "demo" / "headlines.csv"


def test_bad_rows_are_reported_by_line_and_skipped(session, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["item_id", "title", "genres", "published_at"], [
        ["a", "Alpha", "Drama", "2026-01-01"],
        ["", "No id", "", ""],
        ["c", "", "Comedy", ""],
        ["d", "Delta", "", "not a date"],
        ["e", "Echo", "", "1700000000"],
    ])
    report = service.import_catalog(session, [path])
    assert (report.imported, report.updated, report.rejected_total) == (2, 0, 3)
    assert [(r.line, r.reason.split()[0]) for r in report.rejected] == [(3, "missing"), (4, "missing"),
                                                                        (5, "unparsable")]
    assert str(report.rejected[0]).startswith(f"{path}:3:")
    row = session.get(Item, "a")
    assert row.category == "Drama" and row.published_at.year == 2026
    assert session.get(Item, "e").published_at.year == 2023


def test_reimport_updates_text_and_marks_vector_stale(settings, session, catalog_file, fake_encoder,
                                                      tmp_path: Path) -> None:
    service.import_catalog(session, [catalog_file])
    embed_stale(session, settings, encoder=fake_encoder, model_version="base")
    assert count_stale(session, "base") == 0
    again = service.import_catalog(session, [catalog_file])
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 20)
    path = write_csv(tmp_path / "u.csv", ["item_id", "title"], [["e0", "Oil price story zero, revised"]])
    report = service.import_catalog(session, [path])
    assert (report.imported, report.updated) == (0, 1)
    assert session.get(Item, "e0").title == "Oil price story zero, revised"
    assert count_stale(session, "base") == 1
    assert count_stale(session, "v2") == 20  # a new encoder version makes every vector stale


def test_jsonl_and_mind_news_are_recognised(session, tmp_path: Path) -> None:
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"item_id": "j1", "title": "Json one", "tags": ["x", "y"]}) + "\n{broken\n"
                     + json.dumps(["not", "an", "object"]) + "\n")
    mind = tmp_path / "news.tsv"
    mind.write_text("N1\tsports\tgolf\tA golf title\tAbstract here\thttps://x/1\t[]\t[]\n"
                    "N2\tnews\tpolitics\tA vote title\t\thttps://x/2\t[]\t[]\n")
    report = service.import_catalog(session, [jsonl, mind])
    assert report.imported == 3
    reasons = [(r.line, r.reason) for r in report.rejected]
    assert reasons == [(2, "invalid JSON (Expecting property name enclosed in double quotes)"),
                       (3, "not a JSON object")]
    assert session.get(Item, "j1").tags == "x,y"
    n1 = session.get(Item, "N1")
    assert (n1.category, n1.tags, n1.description, n1.source) == ("sports", "golf", "Abstract here", "mind")


def test_interactions_count_unknown_items_reject_bad_rows_and_skip_duplicates(session, catalog_file,
                                                                             tmp_path: Path) -> None:
    service.import_catalog(session, [catalog_file])
    path = write_csv(tmp_path / "i.csv", ["user_id", "item_id", "rating", "timestamp"], [
        ["u1", "e0", "5", "1700000000"], ["u1", "nope", "4", "1700000001"], ["u1", "e1", "many", "1"],
        ["", "e1", "3", "1"], ["u2", "t0", "", "2026-11-01T10:00:00Z"]])
    report = service.import_interactions(session, [path])
    assert (report.imported, report.unknown_items, report.unknown_examples) == (2, 1, ["nope"])
    assert [(r.line, r.reason) for r in report.rejected] == [(4, "rating 'many' is not a number"),
                                                             (5, "missing user_id")]
    assert report.positives == 2  # a 5-star rating and a click
    assert session.scalar(sa.select(Interaction.kind).where(Interaction.user_id == "u2")) == "click"
    again = service.import_interactions(session, [path])
    assert (again.imported, again.duplicates) == (0, 2)


def test_mind_behaviours_keep_history_clicks_and_impressions_with_negatives(session, tmp_path: Path) -> None:
    news = tmp_path / "news.tsv"
    news.write_text("".join(f"N{i}\tnews\tx\tTitle {i}\t\thttps://x/{i}\t[]\t[]\n" for i in range(1, 6)))
    service.import_catalog(session, [news])
    beh = tmp_path / "behaviors.tsv"
    beh.write_text("1\tU1\t11/12/2019 2:14:46 PM\tN1 N2 N99\tN3-1 N4-0 N98-0\n"
                   "2\tU1\t11/13/2019 9:00:00 AM\tN1 N2\tN5-0 N3-1\n"
                   "3\tU2\tyesterday\tN1\tN3-1\n"
                   "4\tU2\t11/13/2019 9:00:00 AM\tN1\tN3-x\n")
    report = service.import_interactions(session, [beh])
    kinds = dict(session.execute(sa.select(Interaction.kind, sa.func.count()).group_by(Interaction.kind)).all())
    assert kinds == {"click": 4, "impression": 4}  # history N1, N2 once; clicks N3 twice; impressions N3 N4 N5 N3
    assert report.unknown_items == 2  # N99 in history, N98 shown
    assert [r.line for r in report.rejected] == [3, 4]
    assert session.scalar(sa.select(sa.func.count()).select_from(Interaction)
                          .where(Interaction.impression_id == "1")) == 3  # N3 shown+clicked, N4 shown


def test_demo_catalog_imports_cleanly(session) -> None:
    report = service.import_catalog(session, [DEMO])
    assert report.rejected_total == 0 and report.imported == 900
    assert "energy" in service.list_topics(session)


def test_missing_file_is_not_found(session, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        service.import_catalog(session, [tmp_path / "absent.csv"])


def test_log_events_validates_kind_and_items(session, catalog_file) -> None:
    service.import_catalog(session, [catalog_file])
    assert service.log_events(session, "ann", [("e0", "click"), ("e1", "impression")]) == 2
    with pytest.raises(InvalidInput):
        service.log_events(session, "ann", [("e0", "rating")])
    with pytest.raises(NotFound):
        service.log_events(session, "ann", [("zzz", "click")])
    history = service.user_history(session, "ann")
    assert [h.item_id for h in history] == ["e0"]  # impressions are not history


def test_feedback_arrays_count_positives_recent_positives_and_any_feedback(session) -> None:
    from datetime import timedelta

    from newsdesk.db import utcnow
    from recsys.recommender import feedback_arrays

    now, old = utcnow(), utcnow() - timedelta(days=60)
    rows = [("u1", "a", "click", None, now), ("u2", "a", "rating", 4.5, old), ("u3", "a", "rating", 4.0, now),
            ("u1", "b", "rating", 2.0, now),  # feedback, not a positive
            ("u1", "c", "impression", None, now),  # shown only: no feedback
            ("u1", "d", "rating", 5.0, old), ("u1", "gone", "click", None, now)]  # not in the catalog
    session.add_all(Interaction(user_id=u, item_id=i, kind=k, rating=r, ts=t) for u, i, k, r, t in rows)
    session.flush()
    popularity, trending, known = feedback_arrays(session, {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}, 4.0)
    assert popularity.tolist() == pytest.approx([1.0, 0.0, 0.0, float(np.log1p(1) / np.log1p(3)), 0.0])
    assert trending.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0])  # a: 2 recent positives, d: old only
    assert known.tolist() == [True, True, False, True, False]
