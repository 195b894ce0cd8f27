"""web load benchmark: 20 concurrent clients against /api/v1/recommendations and the dashboard on loopback.

Usage (from the repo root):
    nice -n 10 .venv/bin/python benchmarks/web_load.py [--home /tmp/newsdesk-bench-web] [--clients 20]
        [--duration 20] [--users 200]

The home is prepared once and kept (MovieLens items + train interactions through recsys.service, the FAISS index
built with the base encoder, web users for MovieLens user ids with a token each, an analyst, 2,000 StockNet tweets
through monitor.service.ingest_messages). The app runs as `newsdesk serve --no-worker` (waitress) in a child
process; this process runs the clients (threads with keep-alive sessions) for a fixed duration per target.
Prints a table and writes benchmarks/results/web_load.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsdesk import db
from newsdesk.settings import Settings

DATA = ROOT.parent / "shared" / "data"
MOVIELENS = DATA / "recsys" / "movielens"
STREAM = DATA / "stream" / "stocknet_tweets_stream.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results"
ANALYST = ("bench-analyst", "bench-analyst-pass")


def prepare(home: Path, n_users: int) -> dict:
    """Load the data once; returns {"tokens": [...], "users": n, ...} (cached in home/bench.json)."""
    from monitor import service as monitor
    from recsys import service as recsys
    from web.users import create_token, create_user

    cache = home / "bench.json"
    if cache.exists():  # vectors are kept; the FAISS index and collaborative map are refitted (seconds)
        settings = Settings.load(env={}, home=home, device="cpu")
        with db.session_scope(settings.database_url) as session:
            recsys.rebuild_index(session, settings)
        return json.loads(cache.read_text())
    settings = Settings.load(env={}, home=home, device="cpu")
    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    t0 = time.perf_counter()
    with db.session_scope(settings.database_url) as session:
        recsys.import_catalog(session, [MOVIELENS / "items.csv"])
        recsys.import_interactions(session, [MOVIELENS / "interactions_train.csv"])
    with db.session_scope(settings.database_url) as session:
        status = recsys.rebuild_index(session, settings)
    with MOVIELENS.joinpath("interactions_train.csv").open(newline="") as fh:
        ids = sorted({r["user_id"] for r in csv.DictReader(fh)}, key=lambda u: int(u) if u.isdigit() else 0)
    users = [u for u in ids if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}", u)][:n_users]
    tokens = []
    with db.session_scope(settings.database_url) as session:
        for user in users:
            create_user(session, user, f"pw-{user}-bench", "reader")
            tokens.append(create_token(session, user))
        create_user(session, ANALYST[0], ANALYST[1], "analyst")
    with gzip.open(STREAM, "rt") as fh:
        payloads = [json.loads(line) for line in itertools.islice(fh, 2000)]
    with db.session_scope(settings.database_url) as session:
        monitor.ensure_default_rules(session)
        monitor.ingest_messages(session, None, payloads, "bench")
    info = {"tokens": tokens, "users": len(users), "items": status.items, "index": status.kind,
            "prepare_s": round(time.perf_counter() - t0, 1)}
    cache.write_text(json.dumps(info))
    return info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "NEWSDESK_HOME": str(home), "HF_HUB_OFFLINE": "1", "NEWSDESK_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "newsdesk"), "serve", "--no-worker", "--port", str(port),
                             "--threads", str(threads)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


def login(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = session.post(f"{base}/login", data={"username": ANALYST[0], "password": ANALYST[1],
                                                   "csrf_token": token}, allow_redirects=False)
    assert response.status_code == 302, response.status_code
    return session


def run_load(name: str, clients: int, duration: float, make_request) -> dict:
    """`clients` threads call `make_request(session, rng)` in a loop for `duration` seconds."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + duration
    barrier = threading.Barrier(clients)

    def client(n: int) -> None:
        rng = random.Random(n)
        session = make_request.session(n)
        barrier.wait()
        while time.monotonic() < stop:
            t = time.perf_counter()
            ok = make_request(session, rng)
            latencies[n].append(time.perf_counter() - t)
            errors[n] += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat = np.array([x for row in latencies for x in row]) * 1000
    return {"target": name, "clients": clients, "duration_s": round(wall, 1), "requests": int(lat.size),
            "errors": int(sum(errors)), "rps": round(lat.size / wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p90_ms": round(float(np.percentile(lat, 90)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(lat.max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/newsdesk-bench-web")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per target")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--threads", type=int, default=24, help="waitress threads")
    args = parser.parse_args()
    home = Path(args.home).resolve()
    info = prepare(home, args.users)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(home, port, args.threads)
    try:
        tokens = info["tokens"]

        def recs(session: requests.Session, rng: random.Random) -> bool:
            token = rng.choice(tokens)
            r = session.get(f"{base}/api/v1/recommendations?k=10", headers={"Authorization": f"Bearer {token}"})
            return r.status_code == 200 and len(r.json()["items"]) == 10

        recs.session = lambda n: requests.Session()

        def dashboard(session: requests.Session, rng: random.Random) -> bool:
            r = session.get(f"{base}/dashboard/")
            return r.status_code == 200 and "data-alert-id" in r.text or "No alerts match" in r.text

        dashboard.session = lambda n: login(base)

        warm = requests.Session()
        for token in tokens[:20]:  # first call loads the index snapshot
            warm.get(f"{base}/api/v1/recommendations?k=10", headers={"Authorization": f"Bearer {token}"})
        load_before = os.getloadavg()[0]
        rows = [run_load("GET /api/v1/recommendations?k=10", args.clients, args.duration, recs),
                run_load("GET /dashboard/ (analyst session)", args.clients, args.duration, dashboard),
                run_load("GET /api/v1/recommendations?k=10", 1, args.duration / 2, recs)]
        load_after = os.getloadavg()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"\nweb load on loopback: {args.clients} clients, {args.duration:.0f} s per target, waitress "
          f"{args.threads} threads, {info['items']} MovieLens items, {info['users']} users "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
          f"{load_before:.1f} before, {load_after:.1f} after: other jobs share these cores)")
    print(f"{'target':38} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7}")
    for r in rows:
        print(f"{r['target']:38} {r['clients']:7} {r['requests']:8} {r['errors']:6} {r['rps']:7} {r['p50_ms']:7} "
              f"{r['p90_ms']:7} {r['p99_ms']:7}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join(sys.argv), "clients": args.clients, "duration_s": args.duration,
           "threads": args.threads, "catalog_items": info["items"], "users": info["users"],
           "cpus": os.cpu_count(), "loadavg_before": round(load_before, 2), "loadavg_after": round(load_after, 2),
           "results": rows}
    tmp = RESULTS / "web_load.json.tmp"
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, RESULTS / "web_load.json")


if __name__ == "__main__":
    main()
