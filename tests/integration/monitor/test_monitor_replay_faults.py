"""The replay producer rides out a Redis restart (kill -9 of a private redis-server the test starts on loopback)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from monitor import replay
from newsdesk.errors import Unavailable
from newsdesk.settings import MonitorSettings

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def _lines(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "text": f"$XYZ update {i}",
                                        "ts": f"2015-06-01T09:{i // 60:02d}:{i % 60:02d}Z"}) + "\n"
                            for i in range(n)))
    return path


def test_replay_to_redis_survives_a_redis_restart(settings, tmp_path: Path) -> None:
    port = _free_port()
    server = _redis_server(port, tmp_path)
    s = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0",
                         monitor=MonitorSettings(stream_name="replay-test", batch_size=10, batch_wait_ms=50))
    path = _lines(tmp_path, 300)
    outcome: dict = {}

    def produce() -> None:
        try:  # 300 messages, one per stream second, at speed 150: about 2 s
            outcome["report"] = replay.replay_file(s, path, to="redis", speed=150, progress=False, retry_for_s=30)
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        time.sleep(0.7)
        server.kill()  # kill -9 mid-replay
        server.wait()
        time.sleep(1.0)
        server = _redis_server(port, tmp_path)  # back, with what it had persisted
        thread.join(60)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["report"].sent == 300
        entries = redis.Redis(port=port).xrange("replay-test")
        ids = {json.loads(fields[b"payload"])["id"] for _, fields in entries}
        assert ids == {f"r{i}" for i in range(300)}  # every line there, resumed where it stopped
    finally:
        server.kill()
        server.wait()


def test_replay_gives_up_after_the_retry_period_and_names_where_to_continue(settings, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    s = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0",
                         monitor=MonitorSettings(stream_name="replay-test", batch_size=10))
    path = _lines(tmp_path, 25)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="continue with --skip 0"):
        replay.replay_file(s, path, to="redis", progress=False, retry_for_s=1.2)
    assert 1.0 < time.monotonic() - started < 10
    server = _redis_server(port, tmp_path)
    try:
        report = replay.replay_file(s, path, to="redis", progress=False, skip=20)
        assert (report.read, report.sent) == (5, 5)
        ids = [json.loads(f[b"payload"])["id"] for _, f in redis.Redis(port=port).xrange("replay-test")]
        assert ids == [f"r{i}" for i in range(20, 25)]
    finally:
        server.kill()
        server.wait()
