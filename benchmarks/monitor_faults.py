"""monitor fault benchmark (issue #21): a replay through Redis with two consumers on PostgreSQL, once without faults
and once with a database outage and a webhook outage in the middle; compares what each run ends with.

Usage (from the repo root; PostgreSQL and Redis as for the tests):
    nice -n 10 .venv/bin/python benchmarks/monitor_faults.py --pg postgresql://postgres@127.0.0.1:5432/test \
        --redis redis://127.0.0.1:6379/15 [--limit 3000] [--rate 25] [--db-outage 40] [--webhook-outage 90]
        [--db-outage-at 20] [--webhook-outage-at 5]

Each run gets its own PostgreSQL database (created and dropped here) with the default rules and watchlist, its own
stream, a webhook receiver on loopback and the worker's parts in threads: `--consumers` stream consumers (claim idle
2 s), the notification job every second (webhook backoff capped at 5 s so the run ends soon after the outage) and
the rules job every 2 s. The faulted run enqueues the first --limit StockNet messages at --rate msg/s; the database
is blocked (ALLOW_CONNECTIONS false, backends terminated) for --db-outage s from --db-outage-at s, the receiver is
down for --webhook-outage s from --webhook-outage-at s. The baseline enqueues everything at once, one consumer.
A keyword classifier stands in for the model (the fault handling does not depend on it, and it keeps the CPU free
for the other engineers); pass --model-home to use a trained sentiment version instead.
Reports stored messages, dead letters, notifications received by the receiver (each carries an Idempotency-Key:
a key received twice is a duplicate, an outbox row never received is lost) and whether the alerts (ticker, rule,
start, end, state) are identical. Writes benchmarks/results/monitor_faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from finetune.inference import machine_signature
from monitor import jobs, producer, service, stream
from monitor.enrich import ensure_default_watchlist
from monitor.replay import read_lines
from monitor.tables import Alert, DeadLetter, Message, Notification
from newsdesk import db
from newsdesk.settings import MonitorSettings, Settings

STREAM = ROOT.parent / "shared" / "data" / "stream" / "stocknet_tweets_stream.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results" / "monitor_faults.json"
NEGATIVE = ("plunge", "crash", "lawsuit", "fraud", "miss", "bankruptcy", "falls", "down", "downgrade", "short", "sell")
POSITIVE = ("soar", "beat", "record", "upgrade", "rally", "great", "up", "buy", "long", "bull")


@dataclass(frozen=True)
class Prediction:
    label: str
    scores: dict[str, float]


class KeywordClassifier:
    """Deterministic stand-in for the sentiment model: a negative word -> negative, a positive one -> positive."""

    version = "keywords"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        out = []
        for t in texts:
            words = set(t.lower().split())
            label = "negative" if words & set(NEGATIVE) else "positive" if words & set(POSITIVE) else "neutral"
            scores = {k: 0.1 for k in ("negative", "neutral", "positive")}
            scores[label] = 0.8
            out.append(Prediction(label, scores))
        return out


class Receiver(BaseHTTPRequestHandler):
    keys: ClassVar[Counter] = Counter()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).keys[self.headers.get("Idempotency-Key", "")] += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Hook:
    """A webhook receiver on loopback that can be taken down and brought back on the same port."""

    def __init__(self) -> None:
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    def start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Receiver)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def set_connections(admin_url: str, name: str, allow: bool) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allow else "false"}'))
        if not allow:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
    engine.dispose()


def run(args: argparse.Namespace, lines: list[str], faults: bool, classifier: Any) -> dict[str, Any]:
    name = f"newsdesk_faults_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    hook = Hook()
    Receiver.keys = Counter()
    home = Path(args.work) / name
    settings = Settings.load(env={}, home=home, secret_key="bench", device="cpu", database_url=url,
                             redis_url=args.redis)
    settings = settings.replace(monitor=MonitorSettings(
        stream_name=f"newsdesk-faults:{name}", consumer_group=f"newsdesk-faults:{name}:g",
        webhook_urls=(hook.url,), webhook_retry_hours=6.0, webhook_max_backoff_s=5.0))
    settings.ensure_dirs()
    db.upgrade(url)
    with db.session_scope(url) as session:
        service.ensure_default_rules(session)
        ensure_default_watchlist(session)
    stop = threading.Event()
    consumers = [stream.Consumer(settings, lambda: classifier, stop, name=f"c{i}", claim_idle_ms=2000,
                                 claim_every_s=1.0) for i in range(args.consumers if faults else 1)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in consumers]

    def every(seconds: float, job: Any) -> None:
        while not stop.wait(seconds):
            try:
                job(settings)
            except Exception as exc:  # noqa: BLE001 - an outage: the job runs again next time
                print(f"  {job.__name__}: {type(exc).__name__}", flush=True)

    threads += [threading.Thread(target=every, args=(1.0, jobs.deliver_notifications_job), daemon=True),
                threading.Thread(target=every, args=(2.0, jobs.evaluate_rules_job), daemon=True)]
    for t in threads:
        t.start()
    started = time.monotonic()
    events: list[str] = []
    db_down = hook_down = False
    sent = 0
    step = max(1, int(args.rate)) if faults else len(lines)
    while sent < len(lines) or (faults and (db_down or hook_down or time.monotonic() - started <
                                            max(args.db_outage_at + args.db_outage,
                                                args.webhook_outage_at + args.webhook_outage))):
        now = time.monotonic() - started
        if faults and not hook_down and args.webhook_outage_at <= now < args.webhook_outage_at + args.webhook_outage:
            hook.stop()
            hook_down = True
            events.append(f"{now:.0f}s webhook down")
        if faults and hook_down and now >= args.webhook_outage_at + args.webhook_outage:
            hook.start()
            hook_down = False
            events.append(f"{now:.0f}s webhook up")
        if faults and not db_down and args.db_outage_at <= now < args.db_outage_at + args.db_outage:
            set_connections(args.pg, name, False)
            db_down = True
            events.append(f"{now:.0f}s database down")
        if faults and db_down and now >= args.db_outage_at + args.db_outage:
            set_connections(args.pg, name, True)
            db_down = False
            events.append(f"{now:.0f}s database up")
        if sent < len(lines):
            chunk = lines[sent:sent + step]
            producer.enqueue(settings, chunk, "replay")
            sent += len(chunk)
        time.sleep(1.0 if faults else 0.0)
    replay_s = time.monotonic() - started
    # drain: nothing pending in Redis, nothing undelivered in the outbox
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        with db.session_scope(url) as session:
            waiting = session.scalar(select(func.count(Notification.id)).where(Notification.status == "pending"))
        if stream.drained(settings) and waiting == 0:
            time.sleep(3.0)  # one more rules + notification pass
            break
    total_s = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(15)
    hook.stop()
    with db.session_scope(url) as session:
        stored = session.scalar(select(func.count(Message.id)))
        alerts = [[a.ticker, a.rule_name, a.started_at.isoformat(),
                   a.resolved_at.isoformat() if a.resolved_at else None, a.state]
                  for a in session.scalars(select(Alert).order_by(Alert.ticker, Alert.rule_name, Alert.started_at))]
        outbox = {n.dedup_key or f"notification-{n.id}": n.status
                  for n in session.scalars(select(Notification).where(Notification.url != ""))}
    received = dict(Receiver.keys)
    result = {"faults": faults, "events": events, "messages": len(lines), "stored": stored, "dead_letters": _dead(url),
              "alerts": len(alerts), "notifications": len(outbox),
              "delivered_once": sum(1 for k in outbox if received.get(k) == 1),
              "duplicates": sum(1 for k, n in received.items() if n > 1),
              "lost": sum(1 for k in outbox if k not in received),
              "replay_s": round(replay_s, 1), "total_s": round(total_s, 1), "alert_list": alerts}
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    return result


def _cpu() -> str:
    """The CPU model and whether it has bfloat16 instructions (as the serving path's machine signature reads them)."""
    sig = machine_signature()
    return f"{sig['cpu'] or platform.machine()}{', AVX512-BF16' if 'avx512_bf16' in sig['isa'] else ''}"


def _dead(url: str) -> int:
    with db.session_scope(url) as session:
        return session.scalar(select(func.count(DeadLetter.id)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", required=True, help="admin URL of a PostgreSQL server (a database is created)")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=25.0, help="messages enqueued per second (faulted run)")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--db-outage", type=float, default=40.0)
    parser.add_argument("--db-outage-at", type=float, default=20.0)
    parser.add_argument("--webhook-outage", type=float, default=90.0)
    parser.add_argument("--webhook-outage-at", type=float, default=5.0)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--model-home", default="", help="a NEWSDESK_HOME with a current sentiment version")
    parser.add_argument("--work", default="/tmp/newsdesk-faults")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    lines = [line for _, line in read_lines(STREAM, args.limit)]
    classifier: Any = KeywordClassifier()
    if args.model_home:
        from finetune.service import load_classifier

        classifier = load_classifier(Settings.load(home=Path(args.model_home)))
    print(f"{len(lines)} messages; baseline run ...", flush=True)
    base = run(args, lines, False, classifier)
    print(f"faulted run ({args.consumers} consumers, {args.rate:g} msg/s, database down {args.db_outage:g} s, "
          f"webhook down {args.webhook_outage:g} s) ...", flush=True)
    faulted = run(args, lines, True, classifier)
    same = base["alert_list"] == faulted["alert_list"]
    print(f"\n{'run':10} {'stored':>7} {'dead':>5} {'alerts':>6} {'notes':>6} {'once':>5} {'dup':>4} {'lost':>5} "
          f"{'seconds':>8}")
    for label, r in (("baseline", base), ("faulted", faulted)):
        print(f"{label:10} {r['stored']:>7} {r['dead_letters']:>5} {r['alerts']:>6} {r['notifications']:>6} "
              f"{r['delivered_once']:>5} {r['duplicates']:>4} {r['lost']:>5} {r['total_s']:>8}")
    print(f"same alerts as the baseline: {same}; faults: {', '.join(faulted['events'])}")
    out = {"command": " ".join(sys.argv), "cpu": _cpu(),
           "load_avg": os.getloadavg(), "classifier": classifier.version if hasattr(classifier, "version") else "",
           "baseline": {k: v for k, v in base.items() if k != "alert_list"},
           "faulted": {k: v for k, v in faulted.items() if k != "alert_list"}, "same_alerts": same}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
