"""Database engine, sessions, the declarative `Base` and migrations (Alembic, one branch per package)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from newsdesk.errors import Unavailable

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Packages that own tables, in dependency order; each keeps its Alembic revisions in <package>/migrations/.
TABLE_PACKAGES = ("finetune", "recsys", "monitor", "web")


class Base(DeclarativeBase):
    """Declarative base shared by every package's `tables.py`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Timezone-naive UTC now (stored as UTC in every database)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


_engines: dict[str, Engine] = {}
_factories: dict[Engine, sessionmaker[Session]] = {}


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (the driver we install), whatever SQLAlchemy's default."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def get_engine(url: str) -> Engine:
    """One engine per URL per process; SQLite gets WAL, foreign keys and a busy timeout."""
    url = normalise_url(url)
    engine = _engines.get(url)
    if engine is not None:
        return engine
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, forked workers)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()


def session_factory(url: str) -> sessionmaker[Session]:
    """One sessionmaker per engine (building one per session cost ~1 ms of event set-up on every request)."""
    engine = get_engine(url)
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(bind=engine, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error.

    Raises:
        Unavailable: the database cannot be reached.
    """
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except (OperationalError, InterfaceError) as exc:
        _quiet_rollback(session)
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    except DBAPIError as exc:
        _quiet_rollback(session)
        if exc.connection_invalidated:
            raise Unavailable(f"database connection lost: {exc.orig}") from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _quiet_rollback(session: Session) -> None:
    """Roll back after a connection error (the rollback itself may fail on the dead connection)."""
    try:
        session.rollback()
    except SQLAlchemyError as exc:
        log.debug("rollback after a connection error failed: %s", exc)


def database_reachable(url: str) -> bool:
    """True when a fresh `SELECT 1` succeeds: tells "this failed on a healthy database" from an outage."""
    try:
        with get_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


# Migrations ------------------------------------------------------------------------------------


def version_locations() -> list[str]:
    """The core revisions plus each table-owning package's `migrations/` folder (found without importing it)."""
    locations = [str(Path(__file__).parent / "migrations" / "versions")]
    for package in TABLE_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations))) / "migrations"
        if folder.is_dir():
            locations.append(str(folder))
    return locations


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("version_locations", " ".join(version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    cfg.attributes["connection_url"] = url
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Upgrade the database at `url` to the head of every branch.

    Raises:
        Unavailable: the database cannot be reached.
    """
    from alembic import command

    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise Unavailable(f"database unavailable: {exc.orig}") from exc


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def current_heads(url: str) -> set[str]:
    """Revisions the database is at (empty when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with get_engine(url).connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        raise Unavailable(f"database unavailable: {exc}") from exc


def is_migrated(url: str) -> bool:
    """True when the database is at the head of every branch."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    heads = current_heads(url)
    if not heads:
        return False
    # A branch that `depends_on` core_0001 absorbs it: core is reached though it is no longer a head in the DB.
    reached = {r.revision for r in script.revision_map.iterate_revisions(tuple(heads), "base", inclusive=True)}
    return set(script.get_heads()) <= reached


def table_names(url: str) -> list[str]:
    return inspect(get_engine(url)).get_table_names()
