"""Every Redis name monitor uses, in one place."""

from __future__ import annotations

import os
import socket
import uuid

from newsdesk.settings import Settings

PAYLOAD_FIELD = "payload"  # the raw JSON text of one message
SOURCE_FIELD = "source"  # the channel it came from (http, replay, ...)
ENQUEUED_FIELD = "enq"  # time.time() when it was added, for ingest -> stored latency


def stream(settings: Settings) -> str:
    """The Redis stream of incoming messages."""
    return settings.monitor.stream_name


def group(settings: Settings) -> str:
    """The consumer group every worker joins (the load is shared within it)."""
    return settings.monitor.consumer_group


def outages(settings: Settings) -> str:
    """Hash: stream entry id -> how many of its deliveries ended in a database outage (they do not count)."""
    return f"{settings.monitor.stream_name}:outage-deliveries"


def consumer(prefix: str = "") -> str:
    """A name unique to this process (host, pid and a random tail)."""
    return f"{prefix or socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
