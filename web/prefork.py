"""Several waitress processes on one port (`newsdesk serve --workers N`): the parent binds, forks and supervises.

One process serves Python code one thread at a time (the GIL), so under many concurrent clients a single process
queues requests even when the machine has idle cores. Here the parent binds the listening socket once, forks N
children that each build the app and accept on that shared socket (the kernel hands each connection to one of
them), restarts a child that dies, and on SIGTERM/SIGINT stops them all. POSIX only (fork).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from newsdesk.errors import InvalidInput

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # busy port, unknown address: one `Error:` line and exit 7, not a traceback
        sock.close()
        from newsdesk.errors import Unavailable

        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                          "(another newsdesk or program holds it? pick one with --port)") from exc
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: Any, app: Any) -> None:
    """Serve until Ctrl-C/SIGTERM, then stop the in-process worker (if any) and close.

    `app` is passed in because waitress may wrap what it serves (`server.application` is not always the Flask app).
    SIGTERM becomes the same KeyboardInterrupt as Ctrl-C (waitress then ends its loop and its threads).
    """
    import threading

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _interrupt)
    try:
        server.run()  # returns (waitress catches the KeyboardInterrupt) or raises it
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping the server")
        runtime = app.extensions.get("newsdesk_runtime")
        if runtime is not None:
            runtime.stop_worker()
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _child(make_app: Callable[[bool], Any], sock: socket.socket, first: bool, threads: int) -> None:
    """Runs in a forked child: build the app, serve on the inherited socket, exit when told."""
    from waitress import create_server

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    app = make_app(first)
    server = create_server(app, sockets=[sock], threads=threads, ident="newsdesk")
    serve_until_stopped(server, app)


def _spawn(make_app: Callable[[bool], Any], sock: socket.socket, first: bool, threads: int) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (the tests see it through HTTP)
        code = 0
        try:
            _child(make_app, sock, first, threads)
        except KeyboardInterrupt:  # told to stop while still building its app: a clean exit
            pass
        except BaseException:  # a child must never return into the parent's code
            logging.getLogger(__name__).exception("server process %d failed", os.getpid())
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def serve_prefork(make_app: Callable[[bool], Any], host: str, port: int, workers: int, threads: int,
                  announce: Callable[[int], None] | None = None) -> None:
    """Serve `make_app(first)` from `workers` forked processes on one socket until SIGTERM/SIGINT.

    `make_app` is called in each child after the fork (so no thread, connection or model crosses it); `first` is
    True for exactly one child at a time (it runs the in-process worker, if any).

    Raises:
        InvalidInput: fewer than 1 worker, or a platform without fork.
    """
    if workers < 1:
        raise InvalidInput("workers must be at least 1", {"field": "workers"})
    if not hasattr(os, "fork"):
        raise InvalidInput("--workers > 1 needs a platform with fork (Linux, macOS)", {"field": "workers"})
    from newsdesk import db

    db.dispose_engines()  # the parent's pooled connections must not be shared with the children
    sock = bind(host, port)
    if announce is not None:
        announce(sock.getsockname()[1])
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: dict[int, bool] = {}
    try:
        for n in range(workers):
            children[_spawn(make_app, sock, n == 0, threads)] = n == 0
        log.info("serving from %d processes: %s", workers, sorted(children))
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.2)
                continue
            first = children.pop(pid, False)
            if stopping:
                break
            log.warning("server process %d exited (status %d); starting another", pid, status)
            time.sleep(RESTART_PAUSE_S)
            children[_spawn(make_app, sock, first, threads)] = first
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in list(children):
            while time.monotonic() < deadline:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
