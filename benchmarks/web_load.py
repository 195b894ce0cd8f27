"""web load benchmark: 20 concurrent clients against /api/v1/recommendations and the dashboard on loopback.

Usage (from the repo root):
    nice -n 10 .venv/bin/python benchmarks/web_load.py [--home /tmp/newsdesk-bench-web] [--clients 20]
        [--duration 20] [--users 200] [--threads 24] [--workers 1,2] [--compare-uncached]
        [--baseline-root DIR] [--no-dashboard]

The home is prepared once and kept (MovieLens items + train interactions through recsys.service, the FAISS index
built with the base encoder, web users for MovieLens user ids with a token each, an analyst, 2,000 StockNet tweets
through monitor.service.ingest_messages). Each server runs as `newsdesk serve --no-worker [--workers N]` (waitress)
in a child process: one per entry of --workers with the result cache on (the 20-client row twice: cache empty at
start, then warm), one with the cache off (--compare-uncached), one from another checkout's code (--baseline-root,
e.g. `git archive <rev> | tar -x -C DIR`). This process runs the clients (threads with keep-alive connections) for
a fixed duration per row. Prints a table and writes benchmarks/results/web_load.json.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import http.client
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
RECS_PATH = "/api/v1/recommendations?k=10"


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


def start_server(home: Path, port: int, threads: int, cache_s: float | None = None,
                 code_root: Path | None = None, workers: int = 1) -> subprocess.Popen:
    """`newsdesk serve --no-worker` in a child; `code_root` runs another checkout's code (a baseline)."""
    env = {**os.environ, "NEWSDESK_HOME": str(home), "HF_HUB_OFFLINE": "1", "NEWSDESK_LOG_LEVEL": "WARNING"}
    if cache_s is not None:
        env["NEWSDESK_RECSYS__RESULT_CACHE_S"] = str(cache_s)
    if code_root is not None:
        env["PYTHONPATH"] = str(code_root)
    # a file, not a pipe nobody reads: a full pipe blocks the server's logging (waitress warns per queued request)
    log = open(home / "logs" / f"bench-server-{port}.log", "w")  # noqa: SIM115 - the child keeps it open
    proc = subprocess.Popen([sys.executable, "-c", "from newsdesk.cli import main; main()", "serve", "--no-worker",
                             "--port", str(port), "--threads", str(threads)] +
                            (["--workers", str(workers)] if workers > 1 else []),
                            env=env, cwd=str(code_root or ROOT), stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start: {Path(log.name).read_text()[-2000:]}")


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


class ApiClient:
    """One keep-alive HTTP/1.1 connection (http.client: a fraction of `requests`' CPU per call, which matters when
    the load generator shares the server's two cores)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get_json(self, path: str, token: str) -> tuple[int, dict]:
        try:
            self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return 0, {}
        return response.status, json.loads(body) if body else {}


def warm_up(port: int, tokens: list[str], seconds: float = 120.0) -> None:
    """New connections until 30 in a row answer fast: every server process has loaded its snapshot."""
    fast, deadline = 0, time.monotonic() + seconds
    while fast < 30 and time.monotonic() < deadline:
        t = time.perf_counter()
        status, _ = ApiClient(port).get_json(RECS_PATH, tokens[fast % len(tokens)])
        fast = fast + 1 if status == 200 and time.perf_counter() - t < 0.5 else 0


def run_targets(base: str, port: int, tokens: list[str], args: argparse.Namespace, label: str,
                dashboard: bool, cached: bool) -> list[dict]:
    """The rows for one server: recommendations at `args.clients` (twice when `cached`: the first run starts with
    an empty result cache, the second finds it filled) and 1 client, the dashboard (when asked)."""

    def recs(client: ApiClient, rng: random.Random) -> bool:
        status, body = client.get_json(RECS_PATH, rng.choice(tokens))
        return status == 200 and len(body["items"]) == 10

    recs.session = lambda n: ApiClient(port)

    def board(session: requests.Session, rng: random.Random) -> bool:
        r = session.get(f"{base}/dashboard/")
        return r.status_code == 200 and "data-alert-id" in r.text or "No alerts match" in r.text

    board.session = lambda n: login(base)

    warm_up(port, tokens)
    name = f"GET {RECS_PATH} [{label}]"
    rows = [run_load(name, args.clients, args.duration, recs)]
    if cached:  # the same again: every user has been asked for (cache filled, token last-use written)
        rows.append(run_load(name.replace("]", ", warm]"), args.clients, args.duration, recs))
    if dashboard:
        rows.append(run_load("GET /dashboard/ (analyst session)", args.clients, args.duration, board))
    rows.append(run_load(name, 1, args.duration / 2, recs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", default="/tmp/newsdesk-bench-web")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per target")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--threads", type=int, default=24, help="waitress threads")
    parser.add_argument("--workers", default="1",
                        help="server processes (`newsdesk serve --workers`); a comma list runs the cached rows "
                             "for each")
    parser.add_argument("--no-dashboard", action="store_true", help="skip the dashboard row")
    parser.add_argument("--compare-uncached", action="store_true",
                        help="also run the recommendation rows against a server with the result cache off")
    parser.add_argument("--baseline-root", default=None,
                        help="also run them against another checkout's code (e.g. `git archive <rev>` unpacked)")
    args = parser.parse_args()
    home = Path(args.home).resolve()
    info = prepare(home, args.users)
    tokens = info["tokens"]
    load_before = os.getloadavg()[0]
    rows = []
    counts = [int(w) for w in str(args.workers).split(",")]
    modes = [(f"cached, {w} proc", None, None, w) for w in counts]
    if args.compare_uncached:
        modes.append((f"uncached, {counts[0]} proc", 0.0, None, counts[0]))
    if args.baseline_root:
        modes.append(("baseline code, 1 proc", None, Path(args.baseline_root).resolve(), 1))
    for n, (label, cache_s, code_root, workers) in enumerate(modes):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(home, port, args.threads, cache_s, code_root, workers)
        try:
            rows += run_targets(base, port, tokens, args, label, dashboard=n == 0 and not args.no_dashboard,
                                cached=cache_s is None and code_root is None)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    load_after = os.getloadavg()[0]
    print(f"\nweb load on loopback: {args.clients} clients, {args.duration:.0f} s per target, waitress "
          f"{args.threads} threads per process, "
          f"{info['items']} MovieLens items, {info['users']} users "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
          f"{load_before:.1f} before, {load_after:.1f} after: other jobs share these cores)")
    print(f"{'target':58} {'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7}")
    for r in rows:
        print(f"{r['target']:58} {r['clients']:7} {r['requests']:8} {r['errors']:6} {r['rps']:7} {r['p50_ms']:7} "
              f"{r['p90_ms']:7} {r['p99_ms']:7}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join(sys.argv), "baseline_root": args.baseline_root, "workers": args.workers,
           "clients": args.clients, "duration_s": args.duration,
           "threads": args.threads, "catalog_items": info["items"], "users": info["users"],
           "cpus": os.cpu_count(), "loadavg_before": round(load_before, 2), "loadavg_after": round(load_after, 2),
           "results": rows}
    tmp = RESULTS / "web_load.json.tmp"
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, RESULTS / "web_load.json")


if __name__ == "__main__":
    main()
