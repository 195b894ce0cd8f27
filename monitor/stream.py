"""Redis Streams consumer: the consumer-group loop read -> process -> commit -> XACK (XADD is `monitor.producer`).

At-least-once: an entry is acknowledged only after its batch is committed; a crashed consumer's pending entries
are claimed by another (XAUTOCLAIM) once idle for `claim_idle_ms`, and idempotent storage drops the redeliveries.
Errors: InvalidInput items become dead letters inside `ingest_messages` (then acked); Unavailable (database or
Redis down) means no acknowledgement and a back-off; anything else is retried one entry at a time and an entry
delivered more than `max_deliveries` times is dead-lettered and acked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from monitor import keys
from monitor.producer import connect
from monitor.service import add_dead_letter, ingest_messages
from newsdesk.db import session_scope
from newsdesk.errors import Unavailable
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

ClassifierProvider = Callable[[], Any]


def ensure_group(client: redis.Redis, settings: Settings) -> None:
    """Create the consumer group (and the stream) if missing; reads start at the beginning of the stream."""
    try:
        client.xgroup_create(keys.stream(settings), keys.group(settings), id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise Unavailable(f"cannot create consumer group: {exc}") from exc
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc


class Consumer:
    """One member of the consumer group; `run()` loops until `stop` is set, `poll_once()` does one batch."""

    def __init__(self, settings: Settings, classifier: ClassifierProvider, stop: threading.Event | None = None, *,
                 name: str | None = None, claim_idle_ms: int = 30_000, claim_every_s: float = 5.0) -> None:
        self.settings = settings
        self.classifier = classifier
        self.stop = stop or threading.Event()
        self.name = name or keys.consumer()
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.client = connect(settings)
        self.latencies: deque[float] = deque(maxlen=100_000)  # enqueue -> committed, seconds
        self.processed = 0

    # The loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.0
        last_claim = 0.0
        while not self.stop.is_set():
            try:
                if backoff == 0.0 and time.monotonic() - last_claim >= self.claim_every_s:
                    self.claim_stale()
                    last_claim = time.monotonic()
                self.poll_once()
                backoff = 0.0
            except Unavailable as exc:
                backoff = min(max(backoff * 2, 1.0), 30.0)
                log.warning("consumer %s: %s; retrying in %.0f s", self.name, exc.message, backoff)
                self.stop.wait(backoff)
        self.client.close()

    def poll_once(self, block_ms: int = 1000) -> int:
        """Read up to batch_size new entries (waiting at most batch_wait_ms after the first), process, ack."""
        entries = self._read(block_ms)
        if entries:
            self._process(entries, deliveries={})
        return len(entries)

    def claim_stale(self) -> int:
        """Take over entries idle in other consumers' pending lists (crashed workers) and process them."""
        total, start = 0, "0-0"
        stream, group = keys.stream(self.settings), keys.group(self.settings)
        while True:
            try:
                ensure_group(self.client, self.settings)
                reply = self.client.xautoclaim(stream, group, self.name, min_idle_time=self.claim_idle_ms,
                                               start_id=start, count=self.settings.monitor.batch_size)
            except RedisError as exc:
                raise Unavailable(f"Redis unavailable: {exc}") from exc
            start, entries = reply[0], [e for e in reply[1] if e[1]]
            if entries:
                total += len(entries)
                log.info("consumer %s claimed %d stale entries", self.name, len(entries))
                self._process(entries, deliveries=self._deliveries(entries))
            if start in (b"0-0", "0-0") or self.stop.is_set():
                return total

    # Internals ------------------------------------------------------------------------------------
    def _read(self, block_ms: int) -> list[tuple[Any, dict]]:
        cfg = self.settings.monitor
        stream, group = keys.stream(self.settings), keys.group(self.settings)
        entries: list[tuple[Any, dict]] = []
        deadline = None
        try:
            ensure_group(self.client, self.settings)
            while len(entries) < cfg.batch_size and not self.stop.is_set():
                wait = block_ms if deadline is None else int(max(1, (deadline - time.monotonic()) * 1000))
                reply = self.client.xreadgroup(group, self.name, {stream: ">"}, count=cfg.batch_size - len(entries),
                                               block=wait)
                if not reply or not reply[0][1]:
                    break
                entries.extend(reply[0][1])
                if deadline is None:
                    deadline = time.monotonic() + cfg.batch_wait_ms / 1000
                if time.monotonic() >= deadline:
                    break
        except RedisError as exc:
            if entries:  # already delivered to us: they stay pending and will be claimed
                log.warning("Redis error after reading %d entries: %s", len(entries), exc)
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        return entries

    def _deliveries(self, entries: list[tuple[Any, dict]]) -> dict[Any, int]:
        ids = [e[0] for e in entries]
        try:
            rows = self.client.xpending_range(keys.stream(self.settings), keys.group(self.settings), min=ids[0],
                                              max=ids[-1], count=len(ids) * 4)
        except RedisError as exc:
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        return {r["message_id"]: int(r["times_delivered"]) for r in rows}

    def _process(self, entries: list[tuple[Any, dict]], deliveries: dict[Any, int]) -> None:
        limit = self.settings.monitor.max_deliveries
        poison = [e for e in entries if deliveries.get(e[0], 1) > limit]
        if poison:
            self._dead_letter(poison, deliveries)
            entries = [e for e in entries if deliveries.get(e[0], 1) <= limit]
        if not entries:
            return
        try:
            self._commit(entries)
        except Unavailable:
            raise
        except Exception:
            log.exception("consumer %s: batch of %d failed; retrying entry by entry", self.name, len(entries))
            for entry in entries:
                try:
                    self._commit([entry])
                except Unavailable:
                    raise
                except Exception:
                    log.exception("stream entry %s failed (delivery %d of %d); left pending", _text(entry[0]),
                                  deliveries.get(entry[0], 1), limit)

    def _commit(self, entries: list[tuple[Any, dict]]) -> None:
        by_source: dict[str, list[tuple[Any, dict]]] = {}
        for entry in entries:
            by_source.setdefault(_field(entry[1], keys.SOURCE_FIELD) or "stream", []).append(entry)
        classifier = self.classifier()
        with session_scope(self.settings.database_url) as session:
            for source, group in by_source.items():
                ingest_messages(session, classifier, [e[1].get(keys.PAYLOAD_FIELD.encode(), b"") for e in group],
                                source, stream_ids=[_text(e[0]) for e in group],
                                batch_size=self.settings.monitor.batch_size)
        self._ack(entries)
        now = time.time()
        for _, fields in entries:
            enq = _field(fields, keys.ENQUEUED_FIELD)
            if enq:
                self.latencies.append(now - float(enq))
        self.processed += len(entries)

    def _dead_letter(self, entries: list[tuple[Any, dict]], deliveries: dict[Any, int]) -> None:
        with session_scope(self.settings.database_url) as session:
            for entry_id, fields in entries:
                add_dead_letter(session, _field(fields, keys.SOURCE_FIELD) or "stream", "process",
                                f"failed {deliveries.get(entry_id)} deliveries (limit "
                                f"{self.settings.monitor.max_deliveries}); see the worker log",
                                fields.get(keys.PAYLOAD_FIELD.encode(), b""), _text(entry_id),
                                deliveries.get(entry_id, 0))
        self._ack(entries)

    def _ack(self, entries: list[tuple[Any, dict]]) -> None:
        try:
            self.client.xack(keys.stream(self.settings), keys.group(self.settings), *[e[0] for e in entries])
        except RedisError as exc:  # committed but not acked: redelivery is harmless (idempotent)
            raise Unavailable(f"Redis unavailable while acknowledging: {exc}") from exc


def pending_count(settings: Settings, client: redis.Redis | None = None) -> int:
    """Entries delivered to the group but not yet acknowledged."""
    client = client or connect(settings)
    try:
        info = client.xpending(keys.stream(settings), keys.group(settings))
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    return int(info["pending"])


def _field(fields: dict, name: str) -> str:
    value = fields.get(name.encode(), fields.get(name))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value or ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
