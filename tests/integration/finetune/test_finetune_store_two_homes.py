"""A version trained and promoted from home A is served by processes of home B (one database, one model store)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from store_support import PROBE, classify_in_a_process_of, home_settings, train_tiny

from finetune import service
from finetune.classifier import ClassifierHandle
from newsdesk import db
from newsdesk.db import session_scope

pytestmark = pytest.mark.slow
PG_URL = os.environ.get("NEWSDESK_TEST_DATABASE_URL", "")


def test_trained_on_a_served_on_b(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # one run (two short trainings): on PostgreSQL when the test database is set, else on a shared SQLite file;
    # tests/unit/finetune/test_finetune_store.py covers both databases with stand-in folders
    url = request.getfixturevalue("pg_url") if PG_URL else f"sqlite:///{tmp_path / 'shared.db'}"
    shared = tmp_path / "store"
    a, b = (home_settings(tmp_path / name, url, shared) for name in ("a", "b"))
    db.upgrade(url)

    first = train_tiny(a, tmp_path)
    assert first.promoted and first.path == shared / "sentiment" / first.version
    on_b = ClassifierHandle(b, refresh_s=0)
    served = on_b.get()
    assert served.version == first.version
    assert served.parts["sentiment"].folder == b.models_dir / "sentiment" / first.version  # B's cached copy
    on_a = ClassifierHandle(a, refresh_s=0).get()
    assert [p.scores for p in served.predict(PROBE)] == [p.scores for p in on_a.predict(PROBE)]
    assert [line["scores"] for line in classify_in_a_process_of(b)] == [p.scores for p in on_a.predict(PROBE)]

    second = train_tiny(a, tmp_path, promote="never", seed=7)
    assert not second.promoted and on_b.get().version == first.version
    with session_scope(url) as session:  # promoted from A: B's live handle swaps without a restart
        service.promote(session, a, "sentiment", second.version)
    assert on_b.get().version == second.version
    with session_scope(url) as session:  # rolled back from B: A's handle follows
        service.rollback(session, b, "sentiment")
    assert ClassifierHandle(a, refresh_s=0).get().version == first.version
