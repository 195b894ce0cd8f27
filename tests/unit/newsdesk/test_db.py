from __future__ import annotations

import pytest
from sqlalchemy import text

from newsdesk import db


def test_migrations_reach_every_head_on_sqlite(db_url: str) -> None:
    assert db.is_migrated(db_url)


def test_session_scope_rolls_back_on_error(db_url: str) -> None:
    with db.session_scope(db_url) as s:
        s.execute(text("CREATE TABLE scratch (x INTEGER)"))
    with pytest.raises(RuntimeError), db.session_scope(db_url) as s:
        s.execute(text("INSERT INTO scratch VALUES (1)"))
        raise RuntimeError("boom")
    with db.session_scope(db_url) as s:
        assert s.execute(text("SELECT COUNT(*) FROM scratch")).scalar() == 0


def test_models_match_migrations(db_url: str) -> None:
    """Every table declared in a package's tables.py is created by its migrations, column for column."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import finetune.tables  # noqa: F401 - every package's tables on the metadata
    import monitor.tables  # noqa: F401
    import newsdesk.tables  # noqa: F401
    import recsys.tables  # noqa: F401
    import web.tables  # noqa: F401
    with db.get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    significant = [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table" and
                                           d[1].name == "apscheduler_jobs")]
    assert significant == []


@pytest.mark.postgres
def test_migrations_reach_every_head_on_postgres(pg_url: str) -> None:
    assert db.is_migrated(pg_url)
    assert "alembic_version" in db.table_names(pg_url)


@pytest.mark.postgres
def test_downgrade_then_upgrade_on_postgres(pg_url: str) -> None:
    db.downgrade(pg_url, "base")
    # apscheduler_jobs is APScheduler's own table (made by its job store when a worker in an earlier test of this
    # run started a scheduler), not a migration's
    left = [t for t in db.table_names(pg_url) if t != "apscheduler_jobs"]
    assert left in (["alembic_version"], [])
    db.upgrade(pg_url)
    assert db.is_migrated(pg_url)


def test_migration_revision_ids_fit_alembic_version_column() -> None:
    """PostgreSQL's alembic_version.version_num is varchar(32): a longer id upgrades on SQLite and fails there."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    ids = [m.group(1) for path in root.glob("*/migrations/**/*.py")
           if (m := re.search(r'^revision = "([^"]+)"', path.read_text(), re.M))]
    assert len(ids) >= 8 and all(len(i) <= 32 for i in ids), [i for i in ids if len(i) > 32]
