"""The producing side of the Redis stream: a client from the settings, and XADD of payloads (`enqueue`)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.exceptions import RedisError

from monitor import keys
from newsdesk.errors import Unavailable
from newsdesk.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for `settings.redis_url`.

    Raises:
        Unavailable: no redis_url is configured.
    """
    if not settings.redis_url:
        raise Unavailable("no Redis configured: set NEWSDESK_REDIS_URL")
    return redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)


def enqueue(settings: Settings, payloads: list[Any], source: str, client: redis.Redis | None = None) -> int:
    """XADD each payload (a dict, or raw JSON text/bytes, kept as is) onto the stream; returns how many.

    Raises:
        Unavailable: Redis cannot be reached.
    """
    client = client or connect(settings)
    now = str(time.time())
    try:
        pipe = client.pipeline(transaction=False)
        for payload in payloads:
            raw = payload if isinstance(payload, (str, bytes)) else json.dumps(payload, default=str)
            pipe.xadd(keys.stream(settings), {keys.PAYLOAD_FIELD: raw, keys.SOURCE_FIELD: source,
                                              keys.ENQUEUED_FIELD: now})
        pipe.execute()
    except RedisError as exc:
        raise Unavailable(f"Redis unavailable: {exc}") from exc
    return len(payloads)
