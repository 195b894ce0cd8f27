"""monitor scale-out benchmark (issue #18): stream messages/s with one and with two worker processes on one
PostgreSQL database and one Redis stream.

Usage (from the repo root; PostgreSQL and Redis as for the tests):
    nice -n 5 .venv/bin/python benchmarks/monitor_scale.py --pg postgresql://postgres@127.0.0.1:5432/test \
        --redis redis://127.0.0.1:6379/15 [--messages 10000] [--workers 1 2]

For each worker count: a fresh PostgreSQL database (created and dropped here) with the default rules and
watchlist, a fresh stream, and that many worker processes, each with its own NEWSDESK_HOME: the real
`newsdesk.worker.Worker` (scheduler election, recorded jobs, one stream consumer per process) with a keyword
classifier in place of the model (the model's speed is `monitor_stream.py`'s subject; this one measures the
scale-out path: Redis, the database, enrichment and rules). Once every worker is up, the first --messages StockNet
lines are enqueued at once and the clock runs until every entry was delivered and acknowledged (msg/s: stream
entries per second; a repeated tweet is stored once). Prints a table and writes
benchmarks/results/monitor_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from finetune.classifier import Prediction
from finetune.inference import machine_signature
from monitor import producer, service, stream
from monitor.enrich import ensure_default_watchlist
from monitor.replay import read_lines
from monitor.tables import Alert, DeadLetter, Message
from newsdesk import db
from newsdesk.settings import MonitorSettings, Settings

STREAM = ROOT.parent / "shared" / "data" / "stream" / "stocknet_tweets_stream.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results" / "monitor_scale.json"
NEGATIVE = {"plunge", "crash", "lawsuit", "fraud", "miss", "bankruptcy", "falls", "down", "downgrade", "short", "sell"}
POSITIVE = {"soar", "beat", "record", "upgrade", "rally", "great", "up", "buy", "long", "bull"}


class KeywordClassifier:
    """Deterministic stand-in for the sentiment model (sentiment only: topics stay NULL)."""

    version = "keywords"
    tasks = ("sentiment",)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        out = []
        for t in texts:
            words = set(t.lower().split())
            label = "negative" if words & NEGATIVE else "positive" if words & POSITIVE else "neutral"
            out.append(Prediction(label, {k: 0.8 if k == label else 0.1 for k in ("negative", "neutral", "positive")}))
        return out

    def predict_tasks(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Prediction]]:
        return [{"sentiment": p} for p in self.predict(texts, batch_size)]


class KeywordHandle:
    def __init__(self) -> None:
        self.classifier = KeywordClassifier()

    def get(self) -> KeywordClassifier:
        return self.classifier


def worker_main() -> None:
    """One worker process (settings from NEWSDESK_* variables, as `newsdesk worker` reads them)."""
    from newsdesk.log import setup_logging
    from newsdesk.worker import Worker

    settings = Settings.load()
    settings.ensure_dirs()
    setup_logging("INFO")
    Worker(settings, classifier_handle=KeywordHandle()).run_forever()


def _spawn(settings: Settings, home: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEWSDESK_HOME": str(home),
           "NEWSDESK_DATABASE_URL": settings.database_url, "NEWSDESK_REDIS_URL": settings.redis_url,
           "NEWSDESK_SECRET_KEY": "bench", "NEWSDESK_DEVICE": "cpu",
           "NEWSDESK_MONITOR__STREAM_NAME": settings.monitor.stream_name,
           "NEWSDESK_MONITOR__CONSUMER_GROUP": settings.monitor.consumer_group}
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--as-worker"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT)


def _count(url: str, model: Any) -> int:
    with db.session_scope(url) as session:
        return session.scalar(select(func.count()).select_from(model))


def run(args: argparse.Namespace, lines: list[str], workers: int) -> dict[str, Any]:
    name = f"newsdesk_scale_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    work = Path(args.work) / name
    settings = Settings.load(env={}, home=work / "bench", secret_key="bench", device="cpu", database_url=url,
                             redis_url=args.redis)
    settings = settings.replace(monitor=MonitorSettings(stream_name=f"newsdesk-scale:{name}",
                                                        consumer_group=f"newsdesk-scale:{name}:g"))
    db.upgrade(url)
    with db.session_scope(url) as session:
        service.ensure_default_rules(session)
        ensure_default_watchlist(session)
    logs = [work / f"worker-{i}.log" for i in range(workers)]
    work.mkdir(parents=True, exist_ok=True)
    procs = [_spawn(settings, work / f"home-{i}", log) for i, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + args.start_timeout
        while not all(log.exists() and "started: jobs from" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"workers did not start: {[log.read_text()[-500:] for log in logs]}")
            time.sleep(0.5)
        load_before = os.getloadavg()
        started = time.monotonic()
        producer.enqueue(settings, lines, "replay")
        enqueued_s = time.monotonic() - started
        deadline = time.monotonic() + args.drain_timeout
        while not stream.drained(settings):  # a repeated tweet (same id) is stored once: count deliveries, not rows
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        total_s = time.monotonic() - started
        load_after = os.getloadavg()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    stored, dead, alerts = _count(url, Message), _count(url, DeadLetter), _count(url, Alert)
    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    client = producer.connect(settings)
    try:
        client.delete(settings.monitor.stream_name)
    finally:
        client.close()
    return {"workers": workers, "lines": len(lines), "stored": stored, "dead_letters": dead, "alerts": alerts,
            "enqueue_s": round(enqueued_s, 2), "total_s": round(total_s, 2),
            "msg_per_s": round(len(lines) / total_s, 1), "load_before": load_before, "load_after": load_after}


def _cpu() -> str:
    """CPU model, cores and bfloat16 (as the serving path's machine signature reads them)."""
    sig = machine_signature()
    bf16 = ", AVX512-BF16" if "avx512_bf16" in sig["isa"] else ""
    return f"{sig['cpu'] or platform.machine()}, {sig['cores']} cores{bf16}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pg", help="admin URL of a PostgreSQL server (a database is created per run)")
    parser.add_argument("--redis")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--drain-timeout", type=float, default=1200.0)
    parser.add_argument("--work", default="/tmp/newsdesk-scale")
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        worker_main()
        return
    if not args.pg or not args.redis:
        parser.error("--pg and --redis are required")
    import logging

    logging.basicConfig(level=logging.ERROR)
    lines = [line for _, line in read_lines(STREAM, args.messages)]
    results = []
    for n in args.workers:
        print(f"{len(lines)} messages, {n} worker(s) ...", flush=True)
        results.append(run(args, lines, n))
    base = results[0]["msg_per_s"] or 1.0
    print(f"\n{'workers':>7} {'lines':>8} {'stored':>7} {'dead':>5} {'enqueue s':>9} {'total s':>8} {'msg/s':>7} "
          f"{'x':>5} {'load before/after':>18}")
    for r in results:
        print(f"{r['workers']:>7} {r['lines']:>8} {r['stored']:>7} {r['dead_letters']:>5} {r['enqueue_s']:>9} "
              f"{r['total_s']:>8} {r['msg_per_s']:>7} {r['msg_per_s'] / base:>5.2f} "
              f"{r['load_before'][0]:>8.1f}/{r['load_after'][0]:<8.1f}")
    out = {"command": " ".join(sys.argv), "cpu": _cpu(), "classifier": "keywords", "runs": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
