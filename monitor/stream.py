"""Redis Streams consumer: the consumer-group loop read -> process -> commit -> XACK (XADD is `monitor.producer`).

At-least-once: an entry is acknowledged only after its batch is committed; a crashed consumer's pending entries
are claimed by another (XAUTOCLAIM) once idle for `claim_idle_ms`, and idempotent storage drops the redeliveries.
While a consumer works on a batch it keeps touching its entries (XCLAIM JUSTID, which does not count a delivery),
so a slow batch is never taken over by another consumer.
Errors: InvalidInput items become dead letters inside `ingest_messages` (then acked); Unavailable (database or
Redis down) means no acknowledgement and a back-off, and that delivery is refunded (see `keys.outages`): an
outage never counts against a message; anything else is retried one entry at a time (if the database turns out
to be down, that is an outage too), and an entry that failed more than `max_deliveries` deliveries on a healthy
database is dead-lettered and acked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from monitor import keys
from monitor.producer import connect
from monitor.service import add_dead_letter, ingest_messages
from newsdesk.db import database_reachable, session_scope
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
        backlog = False  # after an outage: our own pending entries first, before reading new ones
        while not self.stop.is_set():
            try:
                if backlog:
                    backlog = self.retry_own() > 0
                    backoff = 0.0
                    continue
                if backoff == 0.0 and time.monotonic() - last_claim >= self.claim_every_s:
                    self.claim_stale()
                    last_claim = time.monotonic()
                self.poll_once()
                backoff = 0.0
            except Unavailable as exc:
                backlog = True
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

    def retry_own(self) -> int:
        """Process a batch of this consumer's own pending entries (left by a failed batch); returns how many.

        Raises:
            Unavailable: Redis or the database is (still) down.
        """
        try:
            reply = self.client.xreadgroup(keys.group(self.settings), self.name, {keys.stream(self.settings): "0"},
                                           count=self.settings.monitor.batch_size)
        except RedisError as exc:
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        entries = [e for e in (reply[0][1] if reply else []) if e[1]]
        gone = [e for e in (reply[0][1] if reply else []) if not e[1]]  # trimmed from the stream meanwhile
        if gone:
            self._ack(gone)
        if entries:
            self._process(entries, deliveries=self._deliveries(entries))
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
        """Deliveries that counted: Redis's delivery count less the deliveries that ended in an outage."""
        ids = [e[0] for e in entries]
        try:
            rows = self.client.xpending_range(keys.stream(self.settings), keys.group(self.settings), min=ids[0],
                                              max=ids[-1], count=len(ids) * 4)
            refunds = self.client.hmget(keys.outages(self.settings), ids)
        except RedisError as exc:
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        refunded = {i: int(r) for i, r in zip(ids, refunds, strict=True) if r is not None}
        return {r["message_id"]: max(1, int(r["times_delivered"]) - refunded.get(r["message_id"], 0))
                for r in rows}

    def _process(self, entries: list[tuple[Any, dict]], deliveries: dict[Any, int]) -> None:
        limit = self.settings.monitor.max_deliveries
        poison = [e for e in entries if deliveries.get(e[0], 1) > limit]
        if poison:
            self._dead_letter(poison, deliveries)
            entries = [e for e in entries if deliveries.get(e[0], 1) <= limit]
        if not entries:
            return
        with self._holding(entries):
            try:
                self._commit(entries)
            except Unavailable:
                self._refund(entries)
                raise
            except Exception as exc:
                if not database_reachable(self.settings.database_url):
                    self._refund(entries)
                    raise Unavailable("database unavailable (batch failed, the database does not answer)") from exc
                log.exception("consumer %s: batch of %d failed; retrying entry by entry", self.name, len(entries))
                for n, entry in enumerate(entries):
                    try:
                        self._commit([entry])
                    except Unavailable:
                        self._refund(entries[n:])
                        raise
                    except Exception as exc:
                        if not database_reachable(self.settings.database_url):
                            self._refund(entries[n:])
                            raise Unavailable("database unavailable (entry failed, the database does not answer)") \
                                from exc
                        log.exception("stream entry %s failed (delivery %d of %d); left pending", _text(entry[0]),
                                      deliveries.get(entry[0], 1), limit)

    def _refund(self, entries: list[tuple[Any, dict]]) -> None:
        """This delivery of `entries` ended in an outage: do not count it towards `max_deliveries`."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for entry_id, _ in entries:
                pipe.hincrby(keys.outages(self.settings), entry_id, 1)
            pipe.execute()
        except RedisError as exc:  # Redis down too: the delivery counts, as before
            log.warning("consumer %s: cannot record an outage delivery: %s", self.name, exc)

    @contextmanager
    def _holding(self, entries: list[tuple[Any, dict]]) -> Iterator[None]:
        """While the body runs, re-claim `entries` for this consumer every claim_idle_ms / 3 (idle time reset,
        delivery count unchanged), so no other consumer takes over a batch that is still being worked on."""
        every = max(self.claim_idle_ms / 3000, 0.02) if self.claim_idle_ms > 0 else 0.0
        done = threading.Event()
        ids = [e[0] for e in entries]

        def touch() -> None:
            while True:
                try:
                    self.client.xclaim(keys.stream(self.settings), keys.group(self.settings), self.name, 0, ids,
                                       justid=True)
                except RedisError as exc:
                    log.warning("consumer %s: cannot extend the claim on %d entries: %s", self.name, len(ids), exc)
                if done.wait(every):
                    return

        thread = None
        if every > 0:
            thread = threading.Thread(target=touch, daemon=True, name=f"{self.name}-claim")
            thread.start()
        try:
            yield
        finally:
            done.set()
            if thread is not None:
                thread.join()

    def _commit(self, entries: list[tuple[Any, dict]]) -> None:
        by_source: dict[str, list[tuple[Any, dict]]] = {}
        for entry in entries:
            by_source.setdefault(_field(entry[1], keys.SOURCE_FIELD) or "stream", []).append(entry)
        classifier = self.classifier()
        touched: set[str] = set()
        with session_scope(self.settings.database_url) as session:
            for source, group in by_source.items():
                result = ingest_messages(session, classifier,
                                         [e[1].get(keys.PAYLOAD_FIELD.encode(), b"") for e in group], source,
                                         stream_ids=[_text(e[0]) for e in group],
                                         batch_size=self.settings.monitor.batch_size, evaluate_rules=False)
                touched.update(result.tickers)
        self._ack(entries)
        self.evaluate_rules(touched)
        now = time.time()
        for _, fields in entries:
            enq = _field(fields, keys.ENQUEUED_FIELD)
            if enq:
                self.latencies.append(now - float(enq))
        self.processed += len(entries)

    def evaluate_rules(self, touched: set[str] = frozenset()) -> int:
        """Move the rule cursor up to what is committed (nothing older is still in flight); returns transitions.

        A failure here loses nothing: the messages are stored and the next call (or the rules job) catches up.
        """
        from monitor import rule_runner

        try:
            floor = inflight_floor(self.client, self.settings)
            with session_scope(self.settings.database_url) as session:
                return len(rule_runner.advance(session, floor, inclusive=floor is None, late=touched))
        except Unavailable as exc:
            log.warning("consumer %s: rule evaluation postponed: %s", self.name, exc.message)
            return 0

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
        ids = [e[0] for e in entries]
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(keys.stream(self.settings), keys.group(self.settings), *ids)
            pipe.hdel(keys.outages(self.settings), *ids)
            pipe.execute()
        except RedisError as exc:  # committed but not acked: redelivery is harmless (idempotent)
            raise Unavailable(f"Redis unavailable while acknowledging: {exc}") from exc


def inflight_floor(client: redis.Redis, settings: Settings, limit: int = 10_000) -> Any:
    """The oldest message time (naive UTC) among stream entries not yet committed: delivered but unacknowledged,
    or the next one not delivered yet. None when nothing is in flight. Rules may run only below it.

    Raises:
        Unavailable: Redis cannot be reached.
    """
    from monitor.ingest import decode_item, parse_ts

    stream_name, group_name = keys.stream(settings), keys.group(settings)
    try:
        pipe = client.pipeline(transaction=True)  # one atomic view: an entry is unread, pending or acknowledged
        pipe.xinfo_groups(stream_name)
        pipe.xpending_range(stream_name, group_name, min="-", max="+", count=limit)
        groups, pending = pipe.execute()
        ids = [p["message_id"] for p in pending]
        last = next((g.get("last-delivered-id") for g in groups if _text(g.get("name")) == group_name), None)
        reads = client.pipeline(transaction=False)
        for entry_id in ids:
            reads.xrange(stream_name, entry_id, entry_id, count=1)
        if last is not None:
            reads.xrange(stream_name, f"({_text(last)}", "+", count=1)
        replies = reads.execute() if ids or last is not None else []
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    floor = None
    for reply in replies:
        for _, fields in reply:
            try:
                item = decode_item(fields.get(keys.PAYLOAD_FIELD.encode(), b""))
                ts = parse_ts(item.get("ts")) if item.get("ts") else None
            except Exception:  # noqa: BLE001 - an invalid entry is dead-lettered, it holds nothing back
                ts = None
            if ts is not None and (floor is None or ts < floor):
                floor = ts
    return floor


def pending_count(settings: Settings, client: redis.Redis | None = None) -> int:
    """Entries delivered to the group but not yet acknowledged."""
    client = client or connect(settings)
    try:
        info = client.xpending(keys.stream(settings), keys.group(settings))
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    return int(info["pending"])


def drained(settings: Settings) -> bool:
    """Every entry of the stream delivered to the group and acknowledged (a replay has been consumed whole)."""
    client = connect(settings)
    try:
        last = client.xinfo_stream(keys.stream(settings))["last-generated-id"]
        group = next((g for g in client.xinfo_groups(keys.stream(settings))
                      if g["name"] in (keys.group(settings), keys.group(settings).encode())), None)
        return group is not None and group["last-delivered-id"] == last and group["pending"] == 0
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    finally:
        client.close()


def _field(fields: dict, name: str) -> str:
    value = fields.get(name.encode(), fields.get(name))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value or ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
