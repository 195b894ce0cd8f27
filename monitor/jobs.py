"""Worker wiring: stream consumers, the rule-evaluation interval job, the pending-classification job, webhooks."""

from __future__ import annotations

import logging
import threading
from typing import Any

from finetune.classifier import ClassifierHandle, SentimentClassifier
from monitor.replay import current_classifier
from newsdesk.db import session_scope
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

CONSUMERS = 1  # threads per worker process; run more `newsdesk worker` processes to scale out
CLASSIFY_EVERY_S = 20
NOTIFY_EVERY_S = 5

_handles: dict[str, ClassifierHandle] = {}
_lock = threading.Lock()


def use_classifier_handle(settings: Settings, handle: ClassifierHandle) -> None:
    """Make `handle` this process's sentiment handle for `settings`' database (the composition root shares its own)."""
    with _lock:
        _handles[settings.database_url] = handle


def classifier_handle_for(settings: Settings) -> ClassifierHandle:
    """This process's handle for `settings`' database (created on first use when none was handed over)."""
    with _lock:
        if settings.database_url not in _handles:
            _handles[settings.database_url] = ClassifierHandle(settings)
        return _handles[settings.database_url]


def classifier_for(settings: Settings) -> SentimentClassifier | None:
    """The current sentiment classifier for this process, or None while no model is in service."""
    return current_classifier(classifier_handle_for(settings))


def register(scheduler: Any, settings: Settings, stop_event: threading.Event, *,
             classifier_handle: ClassifierHandle | None = None) -> None:
    """Add monitor's jobs to the worker's scheduler and start the stream consumers (when Redis is configured).

    `classifier_handle`: the process's sentiment handle, shared by the jobs and consumers (and the web app).
    """
    if classifier_handle is not None:
        use_classifier_handle(settings, classifier_handle)
    scheduler.add_job(evaluate_rules_job, "interval", seconds=settings.monitor.rule_interval_s, args=[settings],
                      id="monitor-rules", replace_existing=True)
    scheduler.add_job(classify_pending_job, "interval", seconds=CLASSIFY_EVERY_S, args=[settings],
                      id="monitor-classify-pending", replace_existing=True)
    scheduler.add_job(deliver_notifications_job, "interval", seconds=NOTIFY_EVERY_S, args=[settings],
                      id="monitor-notify", replace_existing=True)
    if settings.redis_url:
        for i in range(CONSUMERS):
            thread = threading.Thread(target=run_consumer, args=(settings, stop_event, settings.monitor.claim_idle_ms),
                                      daemon=True, name=f"monitor-consumer-{i}")
            thread.start()
        log.info("monitor: %d stream consumer(s) on %s", CONSUMERS, settings.monitor.stream_name)
    else:
        log.info("monitor: no NEWSDESK_REDIS_URL, so no stream consumer (HTTP and replay ingest still work)")


def run_consumer(settings: Settings, stop_event: threading.Event, claim_idle_ms: int = 30_000) -> None:
    """Consume the stream until `stop_event` is set (a thread target)."""
    from monitor.stream import Consumer

    try:
        Consumer(settings, lambda: classifier_for(settings), stop_event, claim_idle_ms=claim_idle_ms).run()
    except Exception:
        log.exception("monitor consumer stopped on an unexpected error")


def evaluate_rules_job(settings: Settings) -> int:
    """Catch the rule cursor up with what is committed (see `rule_runner.advance`), then, when nothing is in
    flight, re-evaluate tickers with firing alerts at the stream clock (resolves alerts when the flow stops)."""
    from monitor.rule_runner import advance, evaluate_tickers

    floor = None
    if settings.redis_url:
        from monitor import producer, stream

        client = producer.connect(settings)
        try:
            floor = stream.inflight_floor(client, settings)
        finally:
            client.close()
    with session_scope(settings.database_url) as session:
        n = len(advance(session, floor, inclusive=floor is None))
        if floor is None:
            n += len(evaluate_tickers(session, ()))
        return n


def classify_pending_job(settings: Settings, max_batches: int = 20) -> int:
    """Label messages stored while no model was in service; nothing is lost when the model arrives late."""
    from monitor.service import classify_pending

    classifier = classifier_for(settings)
    if classifier is None:
        return 0
    total = 0
    for _ in range(max_batches):
        with session_scope(settings.database_url) as session:
            n = classify_pending(session, classifier, limit=settings.monitor.batch_size * 4,
                                 batch_size=settings.monitor.batch_size)
        total += n
        if n == 0:
            break
    if total:
        log.info("classified %d pending messages with %s", total, classifier.version)
    return total


def deliver_notifications_job(settings: Settings) -> dict[str, int]:
    """Send due webhook notifications (retries with backoff are scheduled in the rows themselves)."""
    from monitor.notify import deliver_pending

    with session_scope(settings.database_url) as session:
        return deliver_pending(session, settings.monitor.webhook_urls,
                               retry_for_s=settings.monitor.webhook_retry_hours * 3600,
                               max_backoff_s=settings.monitor.webhook_max_backoff_s)
