"""Regression tests for issue #20 (what an attacker and a careless user broke), one section per finding."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import PASSWORDS, bearer, csrf_from, fast_hashing, login, page_csrf

from newsdesk.settings import Settings
from web import create_app


def _app(settings: Settings, **web: object) -> Flask:
    app = create_app(settings.replace(web=dataclasses.replace(settings.web, **web)), testing=True)
    app.config.update(SSE_POLL_S=0.05, SSE_MAX_S=0.6)
    return app


def _logout(client: FlaskClient) -> None:
    client.post("/logout", data={"csrf_token": page_csrf(client, "/login")})


def _login_from(client: FlaskClient, username: str, password: str, address: str,
                forwarded: str | None = None):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": address}, headers=headers)


# 1. Login throttle ------------------------------------------------------------------------------------------------

def test_another_accounts_success_does_not_reset_the_throttle(app: Flask, client: FlaskClient,
                                                              tokens: dict) -> None:
    """9 guesses at admin, log in as oneself, repeat: the 11th guess at admin is refused without a password check."""
    limit = app.config["NEWSDESK_SETTINGS"].web.login_rate_limit
    guesses = 0
    statuses = []
    for _ in range(4):
        for _ in range(limit - 1):
            statuses.append(login(client, "admin", "guess-guess").status_code)
            guesses += 1
        assert login(client, "reader").status_code == 302
        _logout(client)
    assert 429 in statuses
    assert statuses[:limit] == [401] * limit and set(statuses[limit:]) == {429}
    assert login(client, "admin").status_code == 429  # the account backs off, even for the right password
    assert login(client, "reader").status_code == 302  # while other accounts are untouched


def test_failures_count_across_server_processes(settings: Settings, db_url: str, tokens: dict) -> None:
    """Two apps (two `serve --workers` processes) on one database share the counters."""
    first, second = _app(settings).test_client(), _app(settings).test_client()
    limit = settings.web.login_rate_limit
    for i in range(limit):
        assert login(first if i % 2 else second, "analyst", "wrong-pass").status_code == 401
    assert login(first, "analyst", "wrong-pass").status_code == 429
    assert login(second, "analyst", "wrong-pass").status_code == 429


def test_rotating_addresses_does_not_escape_the_account_counter(app: Flask, client: FlaskClient,
                                                                tokens: dict) -> None:
    limit = app.config["NEWSDESK_SETTINGS"].web.login_rate_limit
    for i in range(limit):
        assert _login_from(client, "admin", "wrong-pass", f"10.0.0.{i}").status_code == 401
    assert _login_from(client, "admin", "wrong-pass", "10.9.9.9").status_code == 429


def test_a_throttled_shared_address_still_lets_the_real_user_in(settings: Settings, db_url: str,
                                                                tokens: dict) -> None:
    client = _app(settings, login_address_limit=3).test_client()
    for name in ("nobody1", "nobody2", "nobody3"):  # a spray across accounts from one (NAT) address
        assert _login_from(client, name, "guess-guess", "192.0.2.7").status_code == 401
    assert _login_from(client, "nobody4", "guess-guess", "192.0.2.7").status_code == 429
    assert _login_from(client, "reader", "wrong-pass", "192.0.2.7").status_code == 429
    assert _login_from(client, "reader", PASSWORDS["reader"], "192.0.2.7").status_code == 302
    _logout(client)
    assert _login_from(client, "nobody5", "guess-guess", "192.0.2.8").status_code == 401  # other addresses


def test_backoff_doubles_and_expires(settings: Settings, db_url: str, tokens: dict) -> None:
    from web.throttle import LOCK_BASE_S

    app = _app(settings, login_rate_limit=2)
    throttle = app.extensions["newsdesk_throttle"]
    now = [1_000_000.0]
    throttle.clock = lambda: now[0]
    client = app.test_client()
    assert [login(client, "reader", "wrong-pass").status_code for _ in range(3)] == [401, 401, 429]
    now[0] += LOCK_BASE_S + 1
    assert login(client, "reader", "wrong-pass").status_code == 401  # the third failure: the lock doubles
    now[0] += LOCK_BASE_S + 1
    assert login(client, "reader").status_code == 429
    now[0] += LOCK_BASE_S
    assert login(client, "reader").status_code == 302


def test_trusted_proxy_setting_reads_the_forwarded_address(settings: Settings, db_url: str, tokens: dict) -> None:
    direct = _app(settings, login_address_limit=2).test_client()
    proxied = _app(settings, login_address_limit=2, trusted_proxies=1).test_client()
    for client in (direct, proxied):
        for name in ("ghost1", "ghost2"):
            assert _login_from(client, name, "guess-guess", "127.0.0.1", forwarded="198.51.100.1").status_code == 401
    # without a trusted proxy every client is the proxy's address (already throttled by both clients' failures)
    assert _login_from(direct, "ghost3", "guess-guess", "127.0.0.1", forwarded="198.51.100.2").status_code == 429
    # with one, each forwarded client has its own counter
    assert _login_from(proxied, "ghost3", "guess-guess", "127.0.0.1", forwarded="198.51.100.2").status_code == 401
    assert _login_from(proxied, "ghost4", "guess-guess", "127.0.0.1", forwarded="198.51.100.1").status_code == 429


def test_throttle_counts_in_redis_when_configured(redis_settings: Settings, db_url: str, tokens: dict) -> None:
    import redis

    from web.tables import LoginFailure

    first, second = _app(redis_settings).test_client(), _app(redis_settings).test_client()
    limit = redis_settings.web.login_rate_limit
    for i in range(limit):
        assert login(first if i % 2 else second, "admin", "wrong-pass").status_code == 401
    assert login(first, "admin", "wrong-pass").status_code == 429
    client = redis.Redis.from_url(redis_settings.redis_url)
    assert client.zcard(f"{redis_settings.monitor.stream_name}:login-failures:a:admin") == limit
    from newsdesk.db import session_scope

    with session_scope(db_url) as session:
        assert session.query(LoginFailure).count() == 0  # not in the database


# 2. One bad message never loses the good ones beside it (POST /api/v1/ingest, the direct path) ------------------

def _ingest_body(bad: list[str]) -> str:
    good = [json.dumps({"id": f"ok{i}", "text": f"fine message {i} about $AAPL"}) for i in range(3)]
    return "[" + ",".join(good[:2] + bad + good[2:]) + "]"


INGEST_BAD = ['{"id": "t1", "text": "x", "ts": "0001-01-01T00:00:00+14:00"}', '{"id": "a\\ud800", "text": "x"}',
              '{"id": "t3", "text": "lone \\udfff"}', '{"id": "n\\u0000ul", "text": "x"}',
              '{"id": "t5", "text": "x", "extra": {"k": "v\\u0000"}}']


def _check_ingest(client: FlaskClient, token: str) -> None:
    response = client.post("/api/v1/ingest", data=_ingest_body(INGEST_BAD), content_type="application/json",
                           headers=bearer(token))
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["stored"] == 3 and sorted(r["index"] for r in body["rejected"]) == [2, 3, 4, 5, 6]


def test_ingest_dead_letters_bad_items_and_stores_the_rest(client: FlaskClient, tokens: dict) -> None:
    _check_ingest(client, tokens["ingest"])


@pytest.mark.postgres
def test_ingest_dead_letters_bad_items_and_stores_the_rest_on_postgres(settings: Settings, pg_url: str) -> None:
    from web_support import make_users

    pg = settings.replace(database_url=pg_url)
    with pytest.MonkeyPatch.context() as mp:
        fast_hashing(mp)
        tokens = make_users(pg_url)
    _check_ingest(_app(pg).test_client(), tokens["ingest"])


# 3. NUL bytes, lone surrogates and deep JSON are a 4xx at the edge, never a 500 -----------------------------------

def _nul_login(client: FlaskClient):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": "adm\x00in", "password": "whatever-1", "csrf_token": token})


def test_nul_bytes_in_forms_queries_and_bodies_are_refused(client: FlaskClient, tokens: dict) -> None:
    assert _nul_login(client).status_code == 422
    for path in ("/api/v1/alerts?ticker=A%00B", "/api/v1/alerts?st%00ate=x", "/api/v1/alerts/%00"):
        response = client.get(path, headers=bearer(tokens["analyst"]))
        assert response.status_code in (404, 422), path
        assert response.get_json()["error"]["code"] in ("invalid_input", "not_found"), path
    assert client.get("/api/v1/alerts?ticker=A%00B", headers=bearer(tokens["analyst"])).status_code == 422
    login(client, "analyst")
    assert client.get("/dashboard/?ticker=A%00B").status_code == 422
    for body in ('{"item_id": "m\\u0000", "kind": "click"}', '{"item_id": "m\\ud800", "kind": "click"}'):
        response = client.post("/api/v1/feedback", data=body, content_type="application/json",
                               headers=bearer(tokens["reader"]))
        assert response.status_code == 422, body
        message = response.get_json()["error"]["message"]
        assert "NUL" in message or "surrogate" in message


@pytest.mark.postgres
def test_nul_byte_on_the_login_form_is_not_a_500_on_postgres(settings: Settings, pg_url: str) -> None:
    from web_support import make_users

    with pytest.MonkeyPatch.context() as mp:
        fast_hashing(mp)
        tokens = make_users(pg_url)
    client = _app(settings.replace(database_url=pg_url)).test_client()
    assert _nul_login(client).status_code == 422
    response = client.get("/api/v1/alerts?ticker=A%00B", headers=bearer(tokens["analyst"]))
    assert response.status_code == 422
    assert login(client, "admin").status_code == 302  # and the app still works


@pytest.mark.parametrize("path,token", [("/api/v1/feedback", "reader"), ("/api/v1/ingest", "ingest"),
                                        ("/api/v1/models/sentiment/classify", "analyst")])
def test_json_nested_100000_deep_is_a_422(client: FlaskClient, tokens: dict, path: str, token: str) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(path, data=body, content_type="application/json", headers=bearer(tokens[token]))
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert "nested" in response.get_json()["error"]["message"]


# 4. Sessions end at logout, password/role change and deactivation; shorter life; Secure + HSTS behind TLS ---------

def _copied_session(client: FlaskClient) -> str:
    cookie = client.get_cookie("newsdesk_session")
    assert cookie is not None
    return cookie.value


def _with_cookie(app: Flask, value: str) -> FlaskClient:
    other = app.test_client()
    other.set_cookie("newsdesk_session", value)
    return other


def test_a_cookie_copied_before_logout_no_longer_works(app: Flask, client: FlaskClient, tokens: dict) -> None:
    assert login(client, "analyst").status_code == 302
    copied = _copied_session(client)
    assert _with_cookie(app, copied).get("/dashboard/").status_code == 200
    _logout(client)
    response = _with_cookie(app, copied).get("/dashboard/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert login(client, "analyst").status_code == 302  # a fresh login works again


@pytest.mark.parametrize("change", ["password", "role", "deactivate"])
def test_password_role_and_deactivation_end_open_sessions(app: Flask, client: FlaskClient, tokens: dict,
                                                         change: str) -> None:
    from newsdesk.db import session_scope
    from web.users import set_active, set_password, set_role

    assert login(client, "analyst").status_code == 302
    assert client.get("/dashboard/").status_code == 200
    with session_scope(app.config["NEWSDESK_SETTINGS"].database_url) as session:
        {"password": lambda: set_password(session, "analyst", "new-analyst-pass"),
         "role": lambda: set_role(session, "analyst", "reader"),
         "deactivate": lambda: set_active(session, "analyst", False)}[change]()
    response = client.get("/dashboard/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_console_actions_revoke_tokens_and_deactivate_users(client: FlaskClient, tokens: dict) -> None:
    from newsdesk.db import session_scope
    from web.users import list_tokens

    assert client.get("/api/v1/history", headers=bearer(tokens["reader"])).status_code == 200
    login(client, "admin")
    with session_scope(client.application.config["NEWSDESK_SETTINGS"].database_url) as session:
        token_id = next(t.id for t in list_tokens(session, "reader") if t.kind == "user")
    csrf = page_csrf(client, "/console/users")
    response = client.post("/console/users", data={"action": "revoke", "token_id": str(token_id), "csrf_token": csrf})
    assert response.status_code == 200 and f"Revoked token {token_id}" in response.get_data(as_text=True)
    assert client.get("/api/v1/history", headers=bearer(tokens["reader"])).status_code == 401
    response = client.post("/console/users", data={"action": "deactivate", "username": "analyst",
                                                   "csrf_token": csrf})
    assert "analyst deactivated" in response.get_data(as_text=True)
    assert client.get("/api/v1/alerts", headers=bearer(tokens["analyst"])).status_code == 401
    other = client.application.test_client()
    assert login(other, "analyst").status_code == 401


def test_session_lifetime_secure_cookie_and_hsts(settings: Settings, db_url: str, tokens: dict) -> None:
    app = _app(settings, session_minutes=30, secure_cookies=True)
    assert app.permanent_session_lifetime.total_seconds() == 30 * 60
    client = app.test_client()
    response = login(client, "reader")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("newsdesk_session="))
    assert "Secure" in cookie and "Expires=" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = _app(settings).test_client().get("/login")
    assert "Strict-Transport-Security" not in plain.headers


def test_cli_token_expiry_revocation_and_user_admin(settings: Settings, db_url: str, tokens: dict) -> None:
    from datetime import timedelta

    from click.testing import CliRunner

    from newsdesk.cli import cli
    from newsdesk.db import session_scope, utcnow
    from web.tables import ApiToken
    from web.users import authenticate, verify_token

    runner = CliRunner()
    home = ["--home", str(settings.home)]
    result = runner.invoke(cli, [*home, "users", "token", "reader", "--expires", "30d"])
    assert result.exit_code == 0, result.output
    token = result.output.strip()
    with session_scope(db_url) as session:
        assert verify_token(session, token).username == "reader"
        row = session.query(ApiToken).order_by(ApiToken.id.desc()).first()
        assert timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)
        row.expires_at = utcnow() - timedelta(seconds=1)
        token_id = row.id
    with session_scope(db_url) as session:
        assert verify_token(session, token) is None  # expired
    result = runner.invoke(cli, [*home, "users", "token", "reader", "--expires", "soon"])
    assert result.exit_code == 3 and result.output.startswith("Error: --expires")
    result = runner.invoke(cli, [*home, "users", "tokens", "reader"])
    assert result.exit_code == 0 and str(token_id) in result.output
    fresh = runner.invoke(cli, [*home, "users", "token", "reader"]).output.strip()
    with session_scope(db_url) as session:
        fresh_id = session.query(ApiToken.id).order_by(ApiToken.id.desc()).first()[0]
    assert runner.invoke(cli, [*home, "users", "revoke-token", str(fresh_id)]).exit_code == 0
    assert runner.invoke(cli, [*home, "users", "revoke-token", "99999"]).exit_code == 4
    assert runner.invoke(cli, [*home, "users", "set-role", "reader", "analyst"]).exit_code == 0
    result = runner.invoke(cli, [*home, "users", "set-password", "reader", "--password", "brand-new-pass"])
    assert result.exit_code == 0
    assert runner.invoke(cli, [*home, "users", "deactivate", "reader2"]).exit_code == 0
    with session_scope(db_url) as session:
        assert verify_token(session, fresh) is None
        user = authenticate(session, "reader", "brand-new-pass")
        assert user is not None and user.role == "analyst"
        assert authenticate(session, "reader2", PASSWORDS["reader2"]) is None


# 5. Open event streams never starve the request threads ----------------------------------------------------------

def test_many_open_event_streams_leave_healthz_fast(settings: Settings, db_url: str, tokens: dict) -> None:
    """12 dashboards against 8 server threads and 3 stream slots: the extra streams get `retry:` and close at once,
    and /healthz still answers in well under a second (before the cap it waited for a stream to end)."""
    import socket
    import threading
    import time
    import urllib.request

    from waitress import create_server

    app = _app(settings, event_stream_slots=3)
    app.config.update(SSE_MAX_S=4.0, SSE_POLL_S=0.1)
    client = app.test_client()
    assert login(client, "analyst").status_code == 302
    cookie = client.get_cookie("newsdesk_session").value
    server = create_server(app, host="127.0.0.1", port=0, threads=8, ident="test")
    port = server.effective_port

    def serve() -> None:
        with contextlib.suppress(OSError):  # the test closes the sockets under the loop when it is done
            server.run()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    streams = []
    try:
        for _ in range(12):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(f"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: newsdesk_session={cookie}\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            streams.append(sock)
        time.sleep(0.5)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        assert time.monotonic() - started < 1.0
        answers = []
        for sock in streams:
            sock.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data or b"event:" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except TimeoutError:
                pass
            answers.append(data)
        assert sum(b"event: busy" in a and b"retry: " in a for a in answers) == 9
        assert sum(b"event: hello" in a for a in answers) == 3
    finally:
        for sock in streams:
            sock.close()
        server.close()
    # the slots come back when the streams end: a new dashboard streams again
    time.sleep(4.5)
    assert all(app.extensions["newsdesk_event_slots"].take() is not None for _ in range(3))


# 6. Crafted but ordinary inputs: deep JSON, Unicode digits, extreme UTC offsets, CR/LF in redirects ---------------

def test_rule_form_with_huge_or_unicode_digit_values_is_a_flash_not_a_500(client: FlaskClient, tokens: dict) -> None:
    login(client, "analyst")
    token = page_csrf(client, "/dashboard/rules/")
    for value, repeat in (("9" * 100_000, "60"), ("[" * 10_000, "60"), ("1e999", "60"), ("6", "²"), ("٣", "60"),
                          ("nan", "60")):
        form = {"csrf_token": token, "name": "Deep", "kind": "negative_burst", "p.min_negative": value,
                "repeat_minutes": repeat}
        response = client.post("/dashboard/rules/", data=form, follow_redirects=True)
        assert response.status_code == 422, (value[:20], repeat)  # the editor again, with the error and the input
        html = response.get_data(as_text=True)
        assert "Rule created." not in html and ("must be" in html or "repeat must be" in html)


def test_unicode_digits_and_extreme_offsets_in_query_parameters(client: FlaskClient, tokens: dict) -> None:
    analyst = bearer(tokens["analyst"])
    for query in ("rule_id=%C2%B2", "rule_id=%D9%A3", "limit=%D9%A3", "offset=%C2%B2",
                  "since=0001-01-01T00:00:00%2B14:00", "since=9999-12-31T23:59:59-14:00"):
        response = client.get(f"/api/v1/alerts?{query}", headers=analyst)
        assert response.status_code == 422, (query, response.status_code)
    login(client, "analyst")
    for path in ("/dashboard/?page=%C2%B2", "/dashboard/?rule_id=%C2%B2", "/dashboard/dead-letters?page=%C2%B2"):
        assert client.get(path).status_code == 200, path


def test_silence_with_an_extreme_offset_is_a_422(client: FlaskClient, seeded: dict) -> None:
    alert_id = seeded["alerts"][0]
    for ends_at in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        response = client.post(f"/api/v1/alerts/{alert_id}/silence", json={"ends_at": ends_at},
                               headers=bearer(seeded["tokens"]["analyst"]))
        assert response.status_code == 422, ends_at


def test_cr_lf_in_login_next_and_ack_back_never_reach_a_header(client: FlaskClient, seeded: dict) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=/feed/%0D%0ASet-Cookie:%20x=1", data={
        "username": "analyst", "password": PASSWORDS["analyst"], "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard/")
    alert_id = seeded["alerts"][0]
    token = page_csrf(client, f"/dashboard/alerts/{alert_id}")
    response = client.post(f"/dashboard/alerts/{alert_id}/ack", data={
        "csrf_token": token, "note": "seen", "back": "/dashboard/\r\nSet-Cookie: x=1"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/dashboard/alerts/{alert_id}")
    assert "Set-Cookie: x=1" not in str(response.headers)


# 8. `newsdesk serve` stops on Ctrl-C and SIGTERM, with the in-process worker and with --workers children ----------

def _serve(settings: Settings, *args: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("newsdesk")
    env = {**os.environ, "NEWSDESK_HOME": str(settings.home), "NEWSDESK_SECRET_KEY": "k",
           "NEWSDESK_DATABASE_URL": settings.database_url}
    return subprocess.Popen([str(exe), "serve", "--port", "0", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_healthy(port: int, seconds: float = 60.0) -> bool:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.2)
    return False


@pytest.mark.parametrize("args,sig", [((), "SIGINT"), ((), "SIGTERM"), (("--workers", "2", "--no-worker"), "SIGTERM"),
                                      (("--workers", "2"), "SIGINT")])
def test_serve_stops_on_ctrl_c_and_sigterm(settings: Settings, db_url: str, args: tuple, sig: str) -> None:
    import signal
    import subprocess
    import time

    proc = _serve(settings, *args)
    try:
        line = ""
        for _ in range(50):  # log lines may come first
            line = proc.stdout.readline()
            if "serving on http://127.0.0.1:" in line or not line:
                break
        assert "serving on http://127.0.0.1:" in line, line
        assert ("without the worker" in line) == ("--no-worker" in args)
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert _wait_healthy(port)
        time.sleep(1.0)  # the worker's scheduler and the recommender warm-up are running
        started = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=14)  # a child killed after the parent's 15 s grace would time out here
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"serve {' '.join(args)} did not stop on {sig}:\n{out[-2000:]}") from None
    assert time.monotonic() - started < 12
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out and "AttributeError" not in out and "internal error" not in out


# Weaker points ---------------------------------------------------------------------------------------------------

def test_an_ingest_token_writes_under_its_own_source_only(client: FlaskClient, tokens: dict, db_url: str) -> None:
    """`source` in a payload is kept under the token's source: no pre-empting or re-tagging another feed's ids."""
    from sqlalchemy import select

    from monitor import service as monitor
    from monitor.tables import Message
    from newsdesk.db import session_scope

    with session_scope(db_url) as session:  # the real feed stored tweet 42 under AAPL
        monitor.ingest_messages(session, None, [{"id": "42", "text": "$AAPL beats", "ticker": "AAPL",
                                                 "source": "twitter"}], "replay")
        monitor.ingest_messages(session, None, [{"text": "same words", "ticker": "AAPL", "ts": "2026-11-30T10:00:00"}],
                                "replay")
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json=[
        {"id": "42", "text": "$TSLA fake", "ticker": "TSLA", "source": "twitter"},
        {"text": "same words", "ticker": "TSLA", "ts": "2026-11-30T10:00:00"}])
    assert response.status_code == 202
    with session_scope(db_url) as session:
        rows = {(m.source, m.source_id): m.tickers for m in session.scalars(select(Message))}
    assert rows[("twitter", "42")] == "AAPL"  # untouched
    assert rows[("api:analyst:twitter", "42")] == "TSLA"  # the token's own message
    assert rows[("replay", None)] == "AAPL"  # a content-hash duplicate from another source is not re-tagged


def test_item_urls_other_than_http_never_reach_an_href(app: Flask) -> None:
    http_url = app.jinja_env.filters["http_url"]
    assert http_url("https://example.com/a") == "https://example.com/a"
    assert http_url("HTTP://example.com/") == "HTTP://example.com/"
    for bad in ("javascript:alert(1)", "data:text/html,x", " javascript:alert(1)", "//evil.example", None, 5):
        assert http_url(bad) == ""


def test_metrics_method_label_is_bounded(client: FlaskClient) -> None:
    for verb in ("FOO", "BAR", "PROPFIND"):
        client.open("/healthz", method=verb)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="FOO"' not in text and 'method="PROPFIND"' not in text and 'method="OTHER"' in text


def test_retrain_requests_are_coalesced_per_task(client: FlaskClient, tokens: dict) -> None:
    ids = set()
    for _ in range(5):
        response = client.post("/api/v1/models/sentiment/retrain", headers=bearer(tokens["admin"]))
        assert response.status_code == 202
        ids.add(response.get_json()["run_id"])
    assert len(ids) == 1
    other = client.post("/api/v1/models/recsys/retrain", headers=bearer(tokens["admin"])).get_json()["run_id"]
    assert other not in ids


def test_files_are_private_from_the_start(tmp_path) -> None:
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path

    home = tmp_path / "home"
    env = {**os.environ, "NEWSDESK_HOME": str(home)}
    env.pop("NEWSDESK_SECRET_KEY", None)
    env.pop("NEWSDESK_DATABASE_URL", None)
    subprocess.run([str(Path(sys.executable).with_name("newsdesk")), "init"], env=env, check=True,
                   capture_output=True, timeout=120)
    assert stat.S_IMODE((home / "secret_key").stat().st_mode) == 0o600
    for path in [home / "newsdesk.db", *home.glob("logs/*")]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o007 == 0, path


def test_openapi_declares_413_404_and_empty_parameters(client: FlaskClient, tokens: dict) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path == "/openapi.json":
                continue
            assert "422" in operation["responses"], (method, path)
            if method == "post":
                assert "413" in operation["responses"], (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    assert parameter["allowEmptyValue"] is True, (path, parameter["name"])
    response = client.get("/api/v1/alerts?limit=&offset=&since=", headers=bearer(tokens["analyst"]))
    assert response.status_code == 200 and response.get_json()["limit"] == 50


def test_kill_9_of_the_web_process_mid_ingest_loses_and_duplicates_nothing(settings: Settings, db_url: str,
                                                                           tokens: dict) -> None:
    """A batch being stored when the server is killed -9 is either all there or not at all; the client's retry
    against a fresh server then stores exactly what is missing (idempotency keys), never a duplicate."""
    import signal
    import threading
    import time
    import urllib.request

    from sqlalchemy import func, select

    from monitor.tables import Message
    from newsdesk.db import dispose_engines, session_scope

    body = json.dumps([{"id": f"k{i}", "text": f"message {i} on $AAPL and $MSFT, nothing more"}
                       for i in range(1000)]).encode()

    def post(port: int) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/ingest", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {tokens['ingest']}"})
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=30).read()

    dispose_engines()
    proc = _serve(settings, "--no-worker")
    line = proc.stdout.readline()
    while "serving on" not in line and line:
        line = proc.stdout.readline()
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    assert _wait_healthy(port)
    sender = threading.Thread(target=post, args=(port,))
    sender.start()
    time.sleep(0.4)  # the request is being validated and stored
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    sender.join(timeout=30)
    with session_scope(db_url) as session:
        stored = session.scalar(select(func.count(Message.id)))
    assert stored in (0, 1000)  # one transaction: all or nothing
    proc = _serve(settings, "--no-worker")
    try:
        line = proc.stdout.readline()
        while "serving on" not in line and line:
            line = proc.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert _wait_healthy(port)
        post(port)  # the client retries
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    with session_scope(db_url) as session:
        keys = list(session.scalars(select(Message.key)))
    assert len(keys) == 1000 and len(set(keys)) == 1000
