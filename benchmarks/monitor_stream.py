"""monitor benchmark: the StockNet stream through the direct path and through Redis, against the bare classifier.

Usage (from the repo root; MODEL_HOME is a NEWSDESK_HOME with a current sentiment version):
    nice -n 10 .venv/bin/python benchmarks/monitor_stream.py perf --model-home MODEL_HOME [--limit 5000]
        [--paced 1500 --rate 50] [--redis redis://127.0.0.1:6379/15] [--precision auto|float32|bfloat16]
        [--labelled ../shared/data/sentiment/phrasebank_dev.csv ...]
    nice -n 10 .venv/bin/python benchmarks/monitor_stream.py quality --home REPLAYED_HOME
    .venv/bin/python benchmarks/monitor_stream.py topics --model JOINT_MODEL_FOLDER [--limit 3000 --rounds 3]

perf: the first --limit messages of the stream, (1) bare `classifier.predict` over the classifiable texts (at the
served precision, and in float32 beside it when that differs: speed-up and label agreement; with --labelled, macro-F1
of both),
(2) the direct path (`ingest_messages` per micro-batch, commit, rules), (3) Redis: all enqueued, one in-process
consumer drains them, (4) Redis paced at --rate msg/s for --paced messages: ingest -> stored latency. Each run gets
a fresh SQLite database with the default rules and watchlist. Latency "-> alert" is alert row creation minus the
moment the message that completed the window was read (direct) or enqueued (Redis).
topics: the direct path with sentiment and topic from one pass of a joint model against sentiment alone from the
same encoder, alternating rounds (issue #15's speed target: >= 0.9x).
quality: negative-burst alerts in a replayed database vs next-day close-to-close moves in the prices folder: how
often an alert is followed by a fall larger than the ticker's median absolute daily move, against the base rate of
such falls on every trading day of the same tickers and period.
Prints a table and merges its part into benchmarks/results/monitor_stream.json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select

from monitor import producer, service, stream
from monitor.enrich import ensure_default_watchlist
from monitor.ingest import validate_payload
from monitor.replay import read_lines
from monitor.tables import Alert, AlertEvidence, Message
from newsdesk import db
from newsdesk.settings import MonitorSettings, Settings

STREAM = ROOT.parent / "shared" / "data" / "stream" / "stocknet_tweets_stream.jsonl.gz"
PRICES = ROOT.parent / "shared" / "data" / "stream" / "prices"
RESULTS = ROOT / "benchmarks" / "results" / "monitor_stream.json"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)  # milliseconds


def fresh_settings(base: Path, name: str, redis_url: str = "") -> Settings:
    monitor = MonitorSettings(stream_name=f"newsdesk-bench:{name}:{os.getpid()}",
                              consumer_group=f"newsdesk-bench:{name}:{os.getpid()}:g")
    s = Settings.load(env={}, home=base / name, secret_key="bench", device="cpu", redis_url=redis_url)
    s = s.replace(monitor=monitor)
    s.ensure_dirs()
    db.upgrade(s.database_url)
    with db.session_scope(s.database_url) as session:
        service.ensure_default_rules(session)
        ensure_default_watchlist(session)
    return s


def load_classifier(model_home: Path, precision: str) -> Any:
    """The current sentiment version of `model_home` at an inference precision (auto: as served)."""
    from finetune.service import load_classifier as current_classifier
    from newsdesk.errors import NotFound

    settings = Settings.load(env={}, home=model_home, device="cpu")
    settings = settings.replace(finetune=dataclasses.replace(settings.finetune, inference_precision=precision))
    with db.session_scope(settings.database_url) as session:
        try:
            return current_classifier(session, settings)
        except NotFound as exc:
            raise SystemExit(f"{model_home}: {exc.message}") from exc


def bare_classify(clf: Any, texts: list[str]) -> tuple[float, list[str]]:
    """(seconds, labels) of one `predict` over all texts after a warm-up batch."""
    clf.predict(texts[:64])
    started = time.perf_counter()
    labels = [p.label for p in clf.predict(texts, batch_size=64)]
    return time.perf_counter() - started, labels


def labelled_quality(clfs: dict[str, Any], files: list[str]) -> dict[str, Any]:
    """Macro-F1 of each classifier on each labelled file (text,label): what the served precision costs."""
    from finetune.data import read_labelled
    from finetune.evaluate import classification_report

    out: dict[str, Any] = {}
    for f in files:
        rows = read_labelled([f])
        out[Path(f).name] = {name: classification_report([r.label for r in rows],
                                                         [p.label for p in clf.predict([r.text for r in rows])],
                                                         clf.labels)["macro_f1"] for name, clf in clfs.items()}
    return out


def alert_latencies(settings: Settings) -> list[float]:
    """Per alert: created_at minus the read/enqueue time (meta.bench_t) of its newest evidence message."""
    out = []
    with db.session_scope(settings.database_url) as session:
        for alert in session.scalars(select(Alert)):
            metas = session.scalars(select(Message.meta).join(AlertEvidence, AlertEvidence.message_id == Message.id)
                                    .where(AlertEvidence.alert_id == alert.id)).all()
            sent = [m.get("bench_t") for m in metas if m and m.get("bench_t")]
            if sent:
                created = alert.created_at.replace(tzinfo=timezone.utc).timestamp()
                out.append(max(0.0, created - max(sent)))
    return out


def run_direct(settings: Settings, lines: list[str], clf: Any) -> dict[str, Any]:
    batch_size = settings.monitor.batch_size
    stored_lat: list[float] = []
    model_s = 0.0
    alerts = 0
    started = time.perf_counter()
    for i in range(0, len(lines), batch_size):
        read_at = time.time()
        batch = [_stamp(line, read_at) for line in lines[i:i + batch_size]]
        with db.session_scope(settings.database_url) as session:
            result = service.ingest_messages(session, clf, batch, "stocknet", batch_size=batch_size)
        done = time.time()
        stored_lat += [done - read_at] * result.stored
        model_s += result.model_seconds
        alerts += len(result.alerts_fired)
    seconds = time.perf_counter() - started
    return {"messages": len(lines), "seconds": round(seconds, 1), "msg_per_s": round(len(lines) / seconds, 1),
            "model_share": round(model_s / seconds, 3), "stored_p50_ms": pct(stored_lat, 0.5),
            "stored_p99_ms": pct(stored_lat, 0.99), "alerts": alerts,
            "alert_p50_ms": pct(alert_latencies(settings), 0.5), "alert_p99_ms": pct(alert_latencies(settings), 0.99)}


def _stamp(line: str, t: float) -> Any:
    try:
        item = json.loads(line)
        item["bench_t"] = t
        return item
    except ValueError:
        return line


def run_redis(settings: Settings, lines: list[str], clf: Any, rate: float | None) -> dict[str, Any]:
    stop = threading.Event()
    model_time = [0.0]

    class Timed:
        version = clf.version

        tasks = clf.tasks

        def predict_tasks(self, texts, batch_size=64):
            t = time.perf_counter()
            try:
                return clf.predict_tasks(texts, batch_size=batch_size)
            finally:
                model_time[0] += time.perf_counter() - t

    consumer = stream.Consumer(settings, lambda: Timed(), stop, name="bench")
    client = producer.connect(settings)
    stream.ensure_group(client, settings)
    if rate is None:  # throughput: everything queued first, then drained
        for i in range(0, len(lines), 500):
            now = time.time()
            producer.enqueue(settings, [_stamp(x, now) for x in lines[i:i + 500]], "stocknet", client=client)
    thread = threading.Thread(target=consumer.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    if rate is not None:
        for i, line in enumerate(lines):
            due = started + i / rate
            while time.perf_counter() < due:
                time.sleep(max(0.0, min(0.01, due - time.perf_counter())))
            producer.enqueue(settings, [_stamp(line, time.time())], "stocknet", client=client)
    while consumer.processed < len(lines):
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(10)
    client.delete(settings.monitor.stream_name)
    lat = list(consumer.latencies)
    return {"messages": len(lines), "rate_offered": rate, "seconds": round(seconds, 1),
            "msg_per_s": round(len(lines) / seconds, 1), "model_share": round(model_time[0] / seconds, 3),
            "stored_p50_ms": pct(lat, 0.5), "stored_p99_ms": pct(lat, 0.99),
            "alert_p50_ms": pct(alert_latencies(settings), 0.5), "alert_p99_ms": pct(alert_latencies(settings), 0.99)}


def perf(args: argparse.Namespace) -> dict[str, Any]:
    lines = [line for _, line in read_lines(STREAM, args.limit)]
    clf = load_classifier(Path(args.model_home), args.precision)
    texts = []
    for line in lines:
        msg = validate_payload(line, "stocknet")
        if msg.flag is None:
            texts.append(msg.text)
    bare_s, labels = bare_classify(clf, texts)
    out: dict[str, Any] = {"model_version": clf.version, "precision": clf.precision, "path": clf.path,
                           "messages": len(lines),
                           "classifiable": len(texts),
                           "bare_classify": {"seconds": round(bare_s, 1),
                                             "texts_per_s": round(len(texts) / bare_s, 1),
                                             "msg_per_s_equivalent": round(len(lines) / bare_s, 1)}}
    if clf.dtype is not None:  # the float32 model side by side: its speed, and how often the two agree
        float_clf = load_classifier(Path(args.model_home), "float32")
        float_s, float_labels = bare_classify(float_clf, texts)
        out["bare_classify_float32"] = {"seconds": round(float_s, 1), "texts_per_s": round(len(texts) / float_s, 1),
                                        "speedup": round(float_s / bare_s, 2),
                                      "label_agreement": round(sum(a == b for a, b in zip(labels, float_labels))
                                                               / max(len(texts), 1), 4)}
        if args.labelled:
            out["labelled_macro_f1"] = labelled_quality({clf.precision: clf, "float32": float_clf}, args.labelled)
        del float_clf
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        base = Path(tmp)
        out["direct"] = run_direct(fresh_settings(base, "direct"), lines, clf)
        out["direct"]["overhead_ratio"] = round(out["direct"]["seconds"] / bare_s, 2)
        if args.redis:
            out["redis"] = run_redis(fresh_settings(base, "redis", args.redis), lines, clf, None)
            out["redis"]["overhead_ratio"] = round(out["redis"]["seconds"] / bare_s, 2)
            out["redis_paced"] = run_redis(fresh_settings(base, "paced", args.redis), lines[:args.paced], clf,
                                           args.rate)
    return out


def topics(args: argparse.Namespace) -> dict[str, Any]:
    """The direct path with sentiment + topic from one pass of a joint model vs sentiment alone from the same
    encoder (the served classifier without its topic task), alternating rounds over the same messages."""
    from finetune.classifier import ServedClassifier, TextClassifier

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    lines = [line for _, line in read_lines(STREAM, args.limit)]
    joint = TextClassifier(Path(args.model), precision=args.precision)
    if "topic" not in joint.tasks or "sentiment" not in joint.tasks:
        raise SystemExit(f"{args.model}: not a joint sentiment + topic model (heads: {', '.join(joint.tasks)})")
    served = {"sentiment + topic (one pass)": ServedClassifier({"sentiment": joint, "topic": joint}),
              "sentiment alone": ServedClassifier({"sentiment": joint})}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in served}
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        run_direct(fresh_settings(Path(tmp), "warm"), lines[:200], served["sentiment alone"])
        for r in range(args.rounds):  # alternate, so a change in the machine's load hits both alike
            for n, (name, clf) in enumerate(served.items()):  # a fresh database per run: nothing is a duplicate
                runs[name].append(run_direct(fresh_settings(Path(tmp), f"path{n}-round{r}"), lines, clf))
    rates = {name: statistics.median(x["msg_per_s"] for x in rs) for name, rs in runs.items()}
    ratio = round(rates["sentiment + topic (one pass)"] / rates["sentiment alone"], 3)
    out = {"model": str(args.model), "precision": joint.precision, "messages": len(lines), "rounds": args.rounds,
           "msg_per_s_median": rates, "ratio": ratio,
           "runs": runs, "load_at_start": load_at_start}
    print(f"{'path':<30} {'msg/s (median of ' + str(args.rounds) + ')':>24}")
    for name, rate in rates.items():
        print(f"{name:<30} {rate:>24.1f}")
    print(f"{'ratio':<30} {out['ratio']:>24.3f}")
    return out


# Quality ------------------------------------------------------------------------------------------------


def read_prices(ticker: str) -> list[tuple[date, float]]:
    path = PRICES / f"{ticker}.csv"
    if not path.is_file():
        return []
    with path.open() as fh:
        rows = [(date.fromisoformat(r["Date"]), float(r["Adj Close"])) for r in csv.DictReader(fh)
                if r["Adj Close"] not in ("", "null")]
    return sorted(rows)


def median_abs_move(prices: list[tuple[date, float]]) -> float:
    """The ticker's median absolute close-to-close move over its whole price file (2012-2017)."""
    return statistics.median(abs(b[1] / a[1] - 1) for a, b in itertools.pairwise(prices))


def next_day_move(prices: list[tuple[date, float]], day: date) -> float | None:
    """Close of the first trading day after `day` vs the close of the last trading day on or before it."""
    before = [p for d, p in prices if d <= day]
    after = [p for d, p in prices if d > day]
    if not before or not after:
        return None
    return after[0] / before[-1] - 1


def quality(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.load(env={}, home=Path(args.home), device="cpu")
    with db.session_scope(settings.database_url) as session:
        alerts = [(a.ticker, a.started_at) for a in session.scalars(select(Alert).where(
            Alert.kind == "negative_burst"))]
        first, last = session.execute(select(db_min(Message.ts), db_max(Message.ts))).one()
    hits = total = 0
    base_hits = base_total = 0
    per_ticker: dict[str, dict[str, Any]] = {}
    for ticker in sorted({t for t, _ in alerts}):
        prices = read_prices(ticker)
        if len(prices) < 30:
            continue
        period = [(d, p) for d, p in prices if first.date() <= d <= last.date() + timedelta(days=5)]
        moves = [b[1] / a[1] - 1 for a, b in itertools.pairwise(period)]
        median_abs = median_abs_move(prices)
        falls = sum(1 for m in moves if m < -median_abs)
        base_hits, base_total = base_hits + falls, base_total + len(moves)
        days = sorted({ts.date() for t, ts in alerts if t == ticker})  # one outcome per alert day
        outcomes = [next_day_move(prices, d) for d in days]
        outcomes = [m for m in outcomes if m is not None]
        t_hits = sum(1 for m in outcomes if m < -median_abs)
        hits, total = hits + t_hits, total + len(outcomes)
        per_ticker[ticker] = {"alert_days": len(outcomes), "followed_by_fall": t_hits,
                              "base_rate": round(falls / len(moves), 3), "median_abs_move": round(median_abs, 4)}
    out = {"home": str(args.home), "period": [str(first), str(last)], "negative_burst_alerts": len(alerts),
           **_rates(hits, total, base_hits, base_total), "per_ticker": per_ticker}
    with db.session_scope(settings.database_url) as session:
        out["day_end_sweep"] = sweep(session, first, last)
    return out


def _rates(hits: int, total: int, base_hits: int, base_total: int) -> dict[str, Any]:
    rate = hits / total if total else None
    base = base_hits / base_total if base_total else None
    se = (base * (1 - base) / total) ** 0.5 if total and base is not None else None
    return {"alert_days": total, "followed_by_fall": hits, "hit_rate": round(rate, 3) if rate is not None else None,
            "base_rate": round(base, 3) if base is not None else None,
            "z_vs_base": round((rate - base) / se, 2) if se else None}


SWEEP_PARAMS = {"window_minutes": 1440, "baseline_days": 14, "min_negative": 3, "min_share": 0.25,
                "z_threshold": 2.0}


def sweep(session: Any, first: Any, last: Any) -> dict[str, Any]:
    """A daily variant of the burst rule evaluated at 21:00 UTC (after the US close) on every day of every ticker
    with prices: does a burst day precede a fall on the next trading day more often than an ordinary day?"""
    from monitor import rules
    from monitor.rule_runner import ticker_rows, window_stats
    from monitor.tables import MessageTicker

    params = rules.validate_params("negative_burst", SWEEP_PARAMS)
    tickers = [t for (t,) in session.execute(select(MessageTicker.ticker).distinct())
               if (PRICES / f"{t}.csv").is_file()]
    hits = total = base_hits = base_total = 0
    for ticker in tickers:
        prices = read_prices(ticker)
        rows = ticker_rows(session, ticker, first - timedelta(days=15), last)
        if len(prices) < 30 or len(rows) < 20:
            continue
        period = [(d, p) for d, p in prices if first.date() <= d <= last.date()]
        moves = [b[1] / a[1] - 1 for a, b in itertools.pairwise(period)]
        if len(moves) < 5:
            continue
        median_abs = median_abs_move(prices)
        ids = [r[0] for r in rows]
        texts = dict(session.execute(select(Message.id, Message.text).where(Message.id.in_(ids))).all())
        for d, _ in period[:-1]:
            now = datetime(d.year, d.month, d.day, 21, 0)
            move = next_day_move(prices, d)
            if move is None:
                continue
            fell = move < -median_abs
            base_hits, base_total = base_hits + fell, base_total + 1
            if rules.negative_burst(params, window_stats(ticker, rows, params, "negative", now, texts)).met:
                hits, total = hits + fell, total + 1
    return {"params": params, "tickers": len(tickers), **_rates(hits, total, base_hits, base_total)}


def db_min(col):
    from sqlalchemy import func

    return func.min(col)


def db_max(col):
    from sqlalchemy import func

    return func.max(col)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("perf")
    p.add_argument("--model-home", required=True)
    p.add_argument("--limit", type=int, default=5000)
    p.add_argument("--paced", type=int, default=1500)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--precision", default="auto", help="auto (as served), float32 or bfloat16")
    p.add_argument("--labelled", nargs="*", default=[], help="text,label files: macro-F1 served vs float32")
    p.add_argument("--redis", default=os.environ.get("NEWSDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    q = sub.add_parser("quality")
    q.add_argument("--home", required=True)
    t = sub.add_parser("topics", help="one pass for sentiment + topic vs sentiment alone, same joint model")
    t.add_argument("--model", required=True, help="a joint model folder (models/multitask/VERSION)")
    t.add_argument("--limit", type=int, default=3000)
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--precision", default="auto")
    args = parser.parse_args()
    result = {"perf": perf, "quality": quality, "topics": topics}[args.part](args)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result, indent=2, default=str))
    merged = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged[args.part] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2, default=str))
    os.replace(tmp, RESULTS)


if __name__ == "__main__":
    main()
