"""Event-stream benchmark: /healthz and an API call while 50 dashboards hold `/events/stream` open (issue #20, #5).

Usage (from the repo root):
    nice -n 10 .venv/bin/python benchmarks/web_event_streams.py [--home /tmp/newsdesk-bench-sse] [--dashboards 50]
        [--threads 16] [--duration 15]

For each row a fresh `newsdesk serve --no-worker --threads T` runs in a child process on a small home (an analyst
user, no data): once with the default stream cap (`web.event_stream_slots`, 4) and once with the cap lifted (1000,
what the server did before). This process opens N raw `/events/stream` connections with the analyst's session
cookie, re-opens each one the server closes after the `retry:` it was sent (as a browser's EventSource does), and
meanwhile times `/healthz` and `GET /api/v1/alerts` (a fresh connection each, 0.2 s apart, 10 s timeout). Prints a
table and writes benchmarks/results/web_event_streams.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
EXE = Path(sys.executable).with_name("newsdesk")
PASSWORD = "bench-analyst-pass"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "NEWSDESK_HOME": str(home), "NEWSDESK_SECRET_KEY": "bench-secret", "PYTHONPATH": str(ROOT)}
    env.pop("NEWSDESK_DATABASE_URL", None)
    env.pop("NEWSDESK_REDIS_URL", None)
    env.update(extra)
    return env


def prepare(home: Path) -> str:
    """A home with an analyst; returns an analyst API token."""
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(EXE), "init"], env=_env(home), check=True, capture_output=True)
    subprocess.run([str(EXE), "users", "create", "bench", "--role", "analyst", "--password", PASSWORD],
                   env=_env(home), capture_output=True)  # exists already on a second run
    return subprocess.run([str(EXE), "users", "token", "bench"], env=_env(home), check=True, capture_output=True,
                          text=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _login(port: int) -> str:
    session = requests.Session()
    page = session.get(f"http://127.0.0.1:{port}/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    session.post(f"http://127.0.0.1:{port}/login", data={"username": "bench", "password": PASSWORD,
                                                         "csrf_token": csrf}, timeout=10, allow_redirects=False)
    return session.cookies["newsdesk_session"]


class Dashboards:
    """N open event streams, each re-opened `retry` ms after the server closes it."""

    def __init__(self, port: int, cookie: str, n: int) -> None:
        self.port, self.cookie, self.n = port, cookie, n
        self.stop = threading.Event()
        self.busy = 0
        self.streaming = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._one, daemon=True) for _ in range(n)]

    def _one(self) -> None:
        while not self.stop.is_set():
            retry_s = 2.0
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
                    sock.sendall(f"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                                 f"Cookie: newsdesk_session={self.cookie}\r\n\r\n".encode())
                    data = b""
                    while not self.stop.is_set():
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                        if b"event: busy" in data:
                            with self.lock:
                                self.busy += 1
                            retry_s = 5.0
                            break
                        if b"event: hello" in data and b"counted" not in data:
                            with self.lock:
                                self.streaming += 1
                            data += b"counted"
            except OSError:
                pass
            self.stop.wait(retry_s)

    def __enter__(self) -> Dashboards:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()


def _timed(url: str, headers: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except OSError:
        return 10.0
    return time.perf_counter() - started


def run_row(home: Path, token: str, dashboards: int, threads: int, duration: float, slots: int) -> dict:
    port = _free_port()
    proc = subprocess.Popen([str(EXE), "serve", "--no-worker", "--port", str(port), "--threads", str(threads)],
                            env=_env(home, NEWSDESK_WEB__EVENT_STREAM_SLOTS=str(slots)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if _timed(f"http://127.0.0.1:{port}/healthz") < 10:
                break
            time.sleep(0.1)
        cookie = _login(port)
        health, api = [], []
        with Dashboards(port, cookie, dashboards) as board:
            time.sleep(2.0)
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                health.append(_timed(f"http://127.0.0.1:{port}/healthz"))
                api.append(_timed(f"http://127.0.0.1:{port}/api/v1/alerts?limit=5",
                                  {"Authorization": f"Bearer {token}"}))
                time.sleep(0.2)
            busy, streaming = board.busy, board.streaming
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    def stats(values: list[float]) -> dict:
        ms = np.array(values) * 1000
        return {"n": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1),
                "timeouts": int((ms >= 10_000).sum())}

    return {"slots": slots, "dashboards": dashboards, "threads": threads, "healthz": stats(health),
            "alerts_api": stats(api), "streams_served": streaming, "busy_answers": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/newsdesk-bench-sse"))
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    token = prepare(args.home)
    rows = [run_row(args.home, token, args.dashboards, args.threads, args.duration, slots) for slots in (4, 1000)]
    print(f"{'slots':>6} {'dash':>5} {'thr':>4} | {'healthz p50':>11} {'p99':>8} {'max':>8} {'t/o':>4} | "
          f"{'alerts p50':>10} {'p99':>8} {'max':>8} {'t/o':>4} | streamed busy")
    for r in rows:
        h, a = r["healthz"], r["alerts_api"]
        print(f"{r['slots']:>6} {r['dashboards']:>5} {r['threads']:>4} | {h['p50_ms']:>9.1f}ms {h['p99_ms']:>6.1f}ms "
              f"{h['max_ms']:>6.1f}ms {h['timeouts']:>4} | {a['p50_ms']:>8.1f}ms {a['p99_ms']:>6.1f}ms "
              f"{a['max_ms']:>6.1f}ms {a['timeouts']:>4} | {r['streams_served']:>8} {r['busy_answers']:>4}")
    out = {"rows": rows, "cpu": platform.processor() or platform.machine(), "load_avg": os.getloadavg(),
           "duration_s": args.duration, "command": " ".join(sys.argv)}
    path = ROOT / "benchmarks" / "results" / "web_event_streams.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
