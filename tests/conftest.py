"""Shared fixtures: settings on tmp_path, migrated SQLite and (when configured) PostgreSQL, Redis, the base encoder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from newsdesk import db
from newsdesk.settings import MonitorSettings, Settings

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PG_URL = os.environ.get("NEWSDESK_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("NEWSDESK_TEST_REDIS_URL", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(reason="NEWSDESK_TEST_DATABASE_URL is not set")
    skip_redis = pytest.mark.skip(reason="NEWSDESK_TEST_REDIS_URL is not set")
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        if "postgres" in item.keywords and not PG_URL:
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not REDIS_URL:
            item.add_marker(skip_redis)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings rooted in a fresh temporary NEWSDESK_HOME with a SQLite database there; models serve on today's
    torch path (the ONNX export and the path checks have their own tests: they cost a minute per model here)."""
    s = Settings.load(env={}, home=tmp_path / "home", secret_key="test-secret", device="cpu",
                      finetune={"inference_path": "torch"})
    s.ensure_dirs()
    return s


@pytest.fixture
def db_url(settings: Settings) -> Iterator[str]:
    """A migrated SQLite database URL (fresh per test)."""
    db.upgrade(settings.database_url)
    yield settings.database_url
    db.get_engine(settings.database_url).dispose()


@pytest.fixture
def session(db_url: str):
    """A session on the migrated SQLite database; rolled back and closed after the test."""
    s = db.session_factory(db_url)()
    yield s
    s.rollback()
    s.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database created for this test run (so parallel runs never collide)."""
    if not PG_URL:
        pytest.skip("NEWSDESK_TEST_DATABASE_URL is not set")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"newsdesk_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """The run's PostgreSQL database migrated to head, emptied of rows after each test."""
    from sqlalchemy import text

    db.upgrade(pg_database)
    yield pg_database
    engine = db.get_engine(pg_database)
    with engine.begin() as conn:
        tables = [t for t in db.table_names(pg_database) if t != "alembic_version"]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))


@pytest.fixture
def pg_settings(settings: Settings, pg_url: str) -> Settings:
    return settings.replace(database_url=pg_url)


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at the test Redis with stream/group names unique to this test; keys removed after."""
    if not REDIS_URL:
        pytest.skip("NEWSDESK_TEST_REDIS_URL is not set")
    import redis

    prefix = f"newsdesk-test:{uuid.uuid4().hex[:8]}"
    s = settings.replace(redis_url=REDIS_URL,
                         monitor=MonitorSettings(stream_name=f"{prefix}:messages", consumer_group=f"{prefix}:group"))
    yield s
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def base_encoder():
    """The real base encoder (all-MiniLM-L6-v2), loaded once per test run on the CPU."""
    from newsdesk.encoders import load_sentence_encoder

    return load_sentence_encoder(device="cpu")
