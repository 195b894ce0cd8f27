"""recsys fixtures: fake encoder, a 20-item catalog in two topics, interactions, a built index."""

from __future__ import annotations

from pathlib import Path

import pytest
from recsys_fixtures import ITEMS, FakeEncoder, write_csv


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    rows = [[i, t, d, c, "", f"https://example.com/{i}", f"2026-11-{10 + n % 15:02d}T08:00:00Z"]
            for n, (i, t, c, d) in enumerate(ITEMS)]
    return write_csv(tmp_path / "items.csv", ["item_id", "title", "description", "category", "tags", "url",
                                              "published_at"], rows)


@pytest.fixture
def interactions_file(tmp_path: Path) -> Path:
    """12 users: 6 energy readers and 6 tech readers (ratings), a few banking clicks; e6, e7, t7 never touched."""
    rows = []
    ts = 1_700_000_000
    for u in range(6):
        for i in range(6):
            rows.append([f"oil{u}", f"e{(u + i) % 6}", 5.0, ts + u * 100 + i])
        rows.append([f"oil{u}", "b0", 2.0, ts + u * 100 + 50])
    for u in range(6):
        for i in range(6):
            rows.append([f"chip{u}", f"t{(u + i) % 7}", 4.5, ts + u * 100 + i])
        rows.append([f"chip{u}", "b1", 4.0, ts + u * 100 + 50])
    return write_csv(tmp_path / "interactions.csv", ["user_id", "item_id", "rating", "timestamp"], rows)


@pytest.fixture
def built(settings, session, catalog_file, interactions_file, fake_encoder):
    """Catalog + interactions imported and the index built with the fake encoder; returns (settings, session)."""
    from recsys import service

    service.import_catalog(session, [catalog_file])
    service.import_interactions(session, [interactions_file])
    service.rebuild_index(session, settings, encoder=fake_encoder)
    session.commit()
    yield settings, session
    service.get_recommender(settings).invalidate()
