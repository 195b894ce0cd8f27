"""The login throttle: failed logins counted per account and per client address, with backoff, in shared storage.

Every server process (`serve --workers N`) and every restart sees the same counters: they live in the database
(`login_failures`), or in Redis when one is configured (sorted sets that expire on their own).

- **Per account** (`a:<username>`): after `login_rate_limit` failures within `login_window_s`, the account waits
  `LOCK_BASE_S` seconds after its last failure, doubling with each further failure (capped at the window). While
  it waits, no password is checked for it, from any address, so rotating addresses does not buy more guesses.
- **Per address** (`i:<address>`): after `login_address_limit` failures, attempts from the address are refused...
  except a correct password for an account whose own counter is under its limit: the real user behind a shared
  address (NAT, a proxy) still gets in, while a spray of guesses across accounts from there still stops.
- A success clears only that account's counter; it never resets the address or another account.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import sqlalchemy as sa

from newsdesk.db import session_scope
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

LOCK_BASE_S = 30.0
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class Verdict:
    """Seconds each counter still has to wait (0: under its limit)."""

    account_wait: float
    address_wait: float


class FailureStore(Protocol):
    def stats(self, key: str, now: float, window_s: float) -> tuple[int, float]: ...

    def add(self, keys: list[str], now: float, window_s: float) -> None: ...

    def clear(self, key: str) -> None: ...


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


class DatabaseStore:
    """Failures as rows of `login_failures`; old rows go as new ones come."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def stats(self, key: str, now: float, window_s: float) -> tuple[int, float]:
        from web.tables import LoginFailure

        with session_scope(self.database_url) as session:
            count, last = session.execute(
                sa.select(sa.func.count(LoginFailure.id), sa.func.max(LoginFailure.at))
                .where(LoginFailure.key == key, LoginFailure.at > _dt(now - window_s))).one()
        if not count or last is None:
            return 0, 0.0
        return int(count), last.replace(tzinfo=timezone.utc).timestamp()

    def add(self, keys: list[str], now: float, window_s: float) -> None:
        from web.tables import LoginFailure

        with session_scope(self.database_url) as session:
            session.execute(sa.delete(LoginFailure).where(LoginFailure.at <= _dt(now - window_s)))
            session.add_all(LoginFailure(key=key, at=_dt(now)) for key in keys)

    def clear(self, key: str) -> None:
        from web.tables import LoginFailure

        with session_scope(self.database_url) as session:
            session.execute(sa.delete(LoginFailure).where(LoginFailure.key == key))


class RedisStore:
    """Failures as members of one sorted set per key (score: time), expiring after the window."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix

    def stats(self, key: str, now: float, window_s: float) -> tuple[int, float]:
        name = self.prefix + key
        pipe = self.client.pipeline()
        pipe.zremrangebyscore(name, "-inf", now - window_s)
        pipe.zcard(name)
        pipe.zrange(name, -1, -1, withscores=True)
        _, count, last = pipe.execute()
        return int(count), float(last[0][1]) if last else 0.0

    def add(self, keys: list[str], now: float, window_s: float) -> None:
        pipe = self.client.pipeline()
        for key in keys:
            pipe.zadd(self.prefix + key, {uuid.uuid4().hex: now})
            pipe.expire(self.prefix + key, int(window_s) + 1)
        pipe.execute()

    def clear(self, key: str) -> None:
        self.client.delete(self.prefix + key)


class LoginThrottle:
    """Counts failed logins per account and per address (see the module docstring)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        cfg = settings.web
        self.account_limit = max(1, cfg.login_rate_limit)
        self.address_limit = max(1, cfg.login_address_limit)
        self.window_s = float(cfg.login_window_s)
        self.clock = clock
        self.database = DatabaseStore(settings.database_url)
        # Redis keys under the deployment's stream name (`newsdesk:messages:login-failures:a:alice`).
        prefix = f"{settings.monitor.stream_name}:login-failures:"
        self.redis: RedisStore | None = RedisStore(settings.redis_url, prefix) if settings.redis_url else None

    @staticmethod
    def account_key(username: str) -> str:
        return "a:" + username.strip().lower()[:MAX_KEY_CHARS - 2]

    @staticmethod
    def address_key(address: str) -> str:
        return "i:" + address[:MAX_KEY_CHARS - 2]

    def _call(self, method: str, *args: Any) -> Any:
        """Redis when configured (falling back to the database, logged, when it cannot be reached)."""
        if self.redis is not None:
            import redis

            try:
                return getattr(self.redis, method)(*args)
            except redis.RedisError as exc:
                log.warning("login throttle: Redis unavailable (%s); counting in the database", exc)
        return getattr(self.database, method)(*args)

    def _wait(self, key: str, limit: int, now: float) -> float:
        count, last = self._call("stats", key, now, self.window_s)
        if count < limit:
            return 0.0
        lock = min(self.window_s, LOCK_BASE_S * 2 ** (count - limit))
        return max(0.0, last + lock - now)

    def check(self, username: str, address: str) -> Verdict:
        now = self.clock()
        return Verdict(self._wait(self.account_key(username), self.account_limit, now),
                       self._wait(self.address_key(address), self.address_limit, now))

    def fail(self, username: str, address: str) -> None:
        self._call("add", [self.account_key(username), self.address_key(address)], self.clock(), self.window_s)

    def succeeded(self, username: str) -> None:
        self._call("clear", self.account_key(username))
