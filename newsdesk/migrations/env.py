"""Alembic environment: runs every package's branch against the URL set by `newsdesk.db.alembic_config`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool, text

# Every package's tables, so that `alembic check` / autogenerate compare against the full schema (plain imports: a
# broken tables module fails the migration loudly).
import finetune.tables  # noqa: F401
import monitor.tables  # noqa: F401
import newsdesk.tables  # noqa: F401
import recsys.tables  # noqa: F401
import web.tables  # noqa: F401
from newsdesk.db import Base
from newsdesk.locks import NAMESPACE, lock_key

config = context.config

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                     poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":  # one migrator at a time (workers starting together): the
                # others wait here, then find the schema at head (the lock goes with the transaction)
                connection.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                                   {"ns": NAMESPACE, "key": lock_key("migrations")})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
