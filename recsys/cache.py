"""Per-user recommendation results, reused while nothing they depend on has changed.

An entry is keyed by (user id, k, topics) and stored with stamps read from the database on every call: the
user's newest interaction id and history stamp (count and newest id of their non-impression interactions), so a
click, rating or "not interested" recorded by any process invalidates it, and the recommender's snapshot generation
(bumped when the index or the encoder version is reloaded). A lookup whose stamp differs, or an entry older than
the TTL, is a miss. Popularity/trending counts, refreshed every minute, reach cached results through the TTL
(staggered per entry, so a refresh does not make every user miss at once). Impressions are not part of the history
stamp: the ranking ignores them (they neither build the profile nor hide an item), so showing a feed does not
throw its own result away.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from recsys.tables import Interaction

DEFAULT_MAX_ENTRIES = 20_000


_NEWEST = sa.select(sa.func.max(Interaction.id)).where(Interaction.user_id == sa.bindparam("user_id"))
_HISTORY = (sa.select(sa.func.count(Interaction.id), sa.func.max(Interaction.id))
            .where(Interaction.user_id == sa.bindparam("user_id"), Interaction.kind != "impression"))


def newest_interaction(session: Session, user_id: str) -> int:
    """The id of the user's newest interaction of any kind (0: none); an index-only lookup."""
    return int(session.connection().execute(_NEWEST, {"user_id": user_id}).scalar() or 0)


def history_stamp(session: Session, user_id: str) -> tuple[int, int]:
    """(count, newest id) of the user's interactions that the ranking reads (everything but impressions)."""
    count, newest = session.connection().execute(_HISTORY, {"user_id": user_id}).one()
    return int(count or 0), int(newest or 0)


@dataclass
class _Entry:
    stored_at: float
    generation: int
    newest: int
    history: tuple[int, int]
    value: list[Any]


class ResultCache:
    """A thread-safe LRU of per-user results with a time-to-live; `ttl_seconds <= 0` disables it.

    Validation is two-step: the user's newest interaction id (cheap) unchanged means nothing new was recorded; if
    it moved, the history stamp (non-impression count and newest id) decides whether only impressions were added.
    """

    def __init__(self, ttl_seconds: float = 60.0, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.ttl_seconds = float(ttl_seconds)
        self.max_entries = max(1, int(max_entries))
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def lookup(self, key: Hashable, generation: int, newest: int,
               history: Callable[[], tuple[int, int]]) -> tuple[list[Any] | None, _Entry]:
        """(the stored result or None, the stamp to `put` a freshly computed result under).

        `generation` is the recommender's snapshot generation, `newest` the user's newest interaction id, `history`
        computes the user's history stamp (only called when `newest` moved or on a miss). Read them all *before*
        computing a result, so a change racing the computation leaves the stored entry stale.
        """
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and (entry.generation != generation or now - entry.stored_at > self.ttl_seconds):
            entry = None
        if entry is not None and entry.newest == newest:
            return self._hit(key, entry)
        stamp = _Entry(now, generation, newest, history(), [])
        if entry is not None and entry.history == stamp.history:  # only impressions were added since
            entry.newest = newest
            return self._hit(key, entry)
        with self._lock:
            self.misses += 1
            self._entries.pop(key, None)
        return None, stamp

    def _hit(self, key: Hashable, entry: _Entry) -> tuple[list[Any], _Entry]:
        with self._lock:
            self.hits += 1
            if key in self._entries:
                self._entries.move_to_end(key)
        return list(entry.value), entry

    def put(self, key: Hashable, stamp: _Entry, value: list[Any]) -> None:
        """Store a result computed after `lookup` returned `stamp` (its stamps and clock: the TTL counts from then)."""
        if not self.enabled:
            return
        with self._lock:
            self._entries[key] = _Entry(stamp.stored_at, stamp.generation, stamp.newest, stamp.history, list(value))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, user_id: str | None = None) -> None:
        """Drop one user's entries (keys start with the user id), or everything."""
        with self._lock:
            if user_id is None:
                self._entries.clear()
                return
            for key in [k for k in self._entries if isinstance(k, tuple) and k and k[0] == user_id]:
                del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
