"""Named locks in the database: one holder at a time across processes and machines, released when the holder dies.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock(namespace, hash of the name)`) held on a connection
of its own, outside the pool, with TCP keepalives on both ends, so the server drops the lock of a killed process at
once (its socket closes) and that of a vanished machine within about 30 s. SQLite (one machine): an OS file lock in
a folder next to the database file, released by the kernel when the holder dies, kill -9 included.

Users: the scheduler election (`newsdesk.worker`), one training run per task (`finetune.registry.task_lock`) and
one index build at a time (`recsys.service`).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from newsdesk.db import normalise_url
from newsdesk.errors import Conflict, Unavailable

log = logging.getLogger(__name__)

NAMESPACE = 0x6E5344  # first key of every newsdesk advisory lock ("nSD"); the second is a hash of the lock's name
APP_PREFIX = "newsdesk-lock"  # application_name of a lock connection: "newsdesk-lock <host>:<pid> <name>"
# Client side: give up on a silent server within ~20 s; server side: drop a silent client within ~25 s.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
             "tcp_user_timeout": 20_000, "connect_timeout": 10}
SERVER_SETTINGS = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5",
                   "SET tcp_keepalives_count = 3", "SET statement_timeout = '15s'")


def owner_name() -> str:
    """This process as a lock holder and job runner: `host:pid`."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def lock_key(name: str) -> int:
    """The 32-bit second key of lock `name` (signed, as `pg_try_advisory_lock(int, int)` takes it)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def is_postgres(url: str) -> bool:
    return normalise_url(url).startswith("postgresql")


def lock_dir(url: str, fallback: Path) -> Path:
    """Where SQLite's file locks live: `<database file>.locks/` (every process on that file sees them); `fallback`
    for an in-memory database."""
    path = normalise_url(url).split("///", 1)[-1] if url.startswith("sqlite") else ""
    return Path(f"{path}.locks") if path and path != ":memory:" else fallback


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as far as the database knows: `owner` is `host:pid` ('' when unknown)."""

    owner: str

    @property
    def pid(self) -> int | None:
        raw = self.owner.rpartition(":")[2]
        return int(raw) if raw.isdigit() else None

    def describe(self) -> str:
        """ "process 123 on host" ('' when unknown)."""
        host, _, pid = self.owner.rpartition(":")
        if not pid.isdigit():
            return ""
        return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname()[:40] else "")


class HeldLock:
    """One acquired lock: `alive()` says whether it is still ours, `release()` gives it back (idempotent)."""

    def __init__(self, name: str, *, conn: Any = None, handle: IO[str] | None = None) -> None:
        self.name = name
        self._conn = conn  # PostgreSQL: the dedicated connection holding the advisory lock
        self._handle = handle  # SQLite: the open, flock()ed file

    def alive(self) -> bool:
        """True while the lock is held (PostgreSQL: the server still lists it for our session)."""
        if self._handle is not None:
            return not self._handle.closed
        if self._conn is None or self._conn.closed:
            return False
        import psycopg

        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND classid = %s AND objid = %s AND objsubid = 2 AND granted",
                (NAMESPACE, lock_key(self.name) & 0xFFFFFFFF)).fetchone()
        except psycopg.Error as exc:  # any driver error means the session (and with it the lock) is gone
            log.warning("lock %s: the connection holding it failed (%s)", self.name, exc)
            return False
        return bool(row and row[0])

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file releases the flock
            self._handle = None
        if self._conn is not None:
            import psycopg

            try:
                if not self._conn.closed:
                    self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NAMESPACE, lock_key(self.name)))
            except psycopg.Error as exc:  # the session is gone: so is its lock
                log.debug("lock %s: unlock on a failed connection (%s)", self.name, exc)
            finally:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _connect(url: str, name: str) -> Any:
    """A dedicated autocommit psycopg connection for one lock (its session holds the lock).

    Raises:
        Unavailable: the database cannot be reached.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(hide_password=False)
    application = f"{APP_PREFIX} {owner_name()} {name}"[:63]
    try:
        conn = psycopg.connect(conninfo, autocommit=True, application_name=application, **KEEPALIVE)
        for statement in SERVER_SETTINGS:
            conn.execute(statement)
    except psycopg.Error as exc:
        raise Unavailable(f"database unavailable for lock {name}: {exc}") from exc
    return conn


def try_acquire(url: str, name: str, *, fallback_dir: Path) -> HeldLock | None:
    """Lock `name` for this process now, or None when someone else holds it (never waits).

    Raises:
        Unavailable: the database cannot be reached.
    """
    if is_postgres(url):
        import psycopg

        conn = _connect(url, name)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, lock_key(name))).fetchone()[0]
        except psycopg.Error as exc:
            conn.close()
            raise Unavailable(f"database unavailable for lock {name}: {exc}") from exc
        if not got:
            conn.close()
            return None
        return HeldLock(name, conn=conn)
    folder = lock_dir(url, fallback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / f"{_file_name(name)}.lock", "a+")  # noqa: SIM115 - held until release()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(owner_name())
    handle.flush()
    return HeldLock(name, handle=handle)


def holder(url: str, name: str, *, fallback_dir: Path) -> Holder | None:
    """Who holds `name` now (None when nobody does). Best effort: for messages and `newsdesk jobs leader`.

    Raises:
        Unavailable: the database cannot be reached.
    """
    if is_postgres(url):
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        from newsdesk.db import get_engine

        try:
            with get_engine(url).connect() as conn:
                app = conn.execute(text(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.classid = :ns AND l.objid = :key AND l.objsubid = 2 "
                    "AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                    {"ns": NAMESPACE, "key": lock_key(name) & 0xFFFFFFFF}).scalar()
        except SQLAlchemyError as exc:
            raise Unavailable(f"database unavailable: {exc}") from exc
        if app is None:
            return None
        parts = str(app).split(" ")
        return Holder(parts[1] if len(parts) > 1 and parts[0] == APP_PREFIX else "")
    path = lock_dir(url, fallback_dir) / f"{_file_name(name)}.lock"
    if not path.exists():
        return None
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return Holder(handle.read().strip())
    return None


@contextmanager
def hold(url: str, name: str, *, what: str, fallback_dir: Path) -> Iterator[HeldLock]:
    """Hold `name` for the duration of the block.

    Raises:
        Conflict: another process holds it ("`what` is already in progress (process N on host)").
        Unavailable: the database cannot be reached.
    """
    held = try_acquire(url, name, fallback_dir=fallback_dir)
    if held is None:
        try:
            who = holder(url, name, fallback_dir=fallback_dir)
        except Unavailable:
            who = None
        detail = who.describe() if who is not None else ""
        raise Conflict(f"{what} is already in progress" + (f" ({detail})" if detail else ""))
    with held:
        yield held


def is_free(url: str, name: str, *, fallback_dir: Path) -> bool:
    """True when nobody holds `name` (taken and given back at once to find out)."""
    held = try_acquire(url, name, fallback_dir=fallback_dir)
    if held is None:
        return False
    held.release()
    return True


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
