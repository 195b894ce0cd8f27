"""`newsdesk users create|list|token` and `newsdesk serve` (a real waitress process on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from newsdesk import db
from newsdesk.cli import cli
from newsdesk.settings import Settings
from web.users import verify_token


def test_users_create_list_and_token(settings: Settings, db_url: str) -> None:
    runner = CliRunner()
    home = ["--home", str(settings.home)]
    result = runner.invoke(cli, [*home, "users", "create", "erin", "--role", "analyst", "--password", "erin-pass"])
    assert result.exit_code == 0 and "Created erin (analyst)" in result.output
    result = runner.invoke(cli, [*home, "users", "create", "frank"])
    assert result.exit_code == 0 and "password: " in result.output
    result = runner.invoke(cli, [*home, "users", "create", "erin", "--password", "erin-pass"])
    assert result.exit_code == 5 and result.output.strip() == "Error: user 'erin' already exists"
    result = runner.invoke(cli, [*home, "users", "create", "gina", "--password", "123"])
    assert result.exit_code == 3 and "at least 6 characters" in result.output
    result = runner.invoke(cli, [*home, "users", "list"])
    assert "erin" in result.output and "analyst" in result.output and "frank" in result.output
    result = runner.invoke(cli, [*home, "users", "token", "erin", "--kind", "ingest"])
    token = result.output.strip()
    assert result.exit_code == 0 and token.startswith("ndi_")
    with db.session_scope(db_url) as session:
        assert verify_token(session, token, "ingest").username == "erin"
    result = runner.invoke(cli, [*home, "users", "token", "nobody"])
    assert result.exit_code == 4 and result.output.startswith("Error: no user 'nobody'")


def test_serve_runs_waitress_and_answers(settings: Settings, db_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("newsdesk")
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_SECRET_KEY": "k"}
    proc = subprocess.Popen([str(exe), "serve", "--no-worker", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    body = response.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert body == b'{"status":"ok"}\n'
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"serving on http://127.0.0.1:{port}/" in out and "without the worker" in out


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_for(predicate: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_serve_with_workers_forks_supervises_and_stops(settings: Settings, db_url: str) -> None:
    import signal

    import pytest

    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to see the server processes")
    exe = Path(sys.executable).with_name("newsdesk")
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_SECRET_KEY": "k"}
    proc = subprocess.Popen([str(exe), "serve", "--no-worker", "--workers", "2", "--threads", "4", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert "with 2 processes" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert _wait_for(lambda: len(_children(proc.pid)) == 2)
        first = _children(proc.pid)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.read() == b'{"status":"ok"}\n'
            except OSError:
                return False

        assert _wait_for(healthy)
        assert all(healthy() for _ in range(20))  # new connection each time: either process may take it
        os.kill(first[0], signal.SIGKILL)  # a crashed server process is replaced
        assert _wait_for(lambda: len(_children(proc.pid)) == 2 and first[0] not in _children(proc.pid))
        assert _wait_for(healthy)
    finally:
        children = _children(proc.pid)
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists() and
                "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]


def test_serve_on_a_busy_port_is_one_error_line_and_exit_7(settings: Settings, db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["--home", str(settings.home), "serve", "--no-worker", "--port", str(port)])
    assert result.exit_code == 7
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}") and "--port" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_recommend_for_an_unknown_user_is_not_found(settings: Settings, db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--home", str(settings.home), "recommend", "--user", "nosuchuser"])
    assert result.exit_code == 4 and result.output.startswith("Error: no user 'nosuchuser'")
