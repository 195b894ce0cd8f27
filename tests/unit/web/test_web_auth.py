"""Login, roles on every page, CSRF, throttling, cookies, users and tokens."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import PASSWORDS, bearer, csrf_from, login, page_csrf

from newsdesk import db
from newsdesk.errors import Conflict, InvalidInput
from web.users import authenticate, create_token, create_user, verify_token

PAGES = {  # path -> lowest role allowed
    "/feed/": "reader", "/feed/onboarding": "reader",
    "/dashboard/": "analyst", "/dashboard/dead-letters": "analyst", "/dashboard/rules/": "analyst",
    "/dashboard/alerts/1": "analyst", "/dashboard/series.json": "analyst", "/events/stream": "analyst",
    "/console/": "admin", "/console/users": "admin",
}
RANK = {"reader": 0, "analyst": 1, "admin": 2}


def test_create_user_validates_and_refuses_duplicates(session) -> None:
    user = create_user(session, "alice", "secret-1", "analyst")
    assert user.password_hash != "secret-1" and user.password_hash.startswith("pbkdf2:")
    with pytest.raises(Conflict):
        create_user(session, "alice", "secret-2", "reader")
    with pytest.raises(InvalidInput):
        create_user(session, "bob", "x", "reader")
    with pytest.raises(InvalidInput):
        create_user(session, "bob", "secret-1", "owner")
    with pytest.raises(InvalidInput):
        create_user(session, "<b>", "secret-1", "reader")
    assert authenticate(session, "alice", "secret-1").username == "alice"
    assert authenticate(session, "alice", "wrong") is None
    assert authenticate(session, "nobody", "secret-1") is None


def test_tokens_are_hashed_and_kind_specific(session) -> None:
    from web.tables import ApiToken

    create_user(session, "carol", "secret-1", "reader")
    user_token, ingest_token = create_token(session, "carol"), create_token(session, "carol", "ingest")
    stored = {t.token_hash for t in session.query(ApiToken)}
    assert user_token not in stored and ingest_token not in stored
    assert verify_token(session, user_token, "user").username == "carol"
    assert verify_token(session, user_token, "ingest") is None
    assert verify_token(session, ingest_token, "user") is None
    assert verify_token(session, "nd_bogus", "user") is None


def test_login_lands_each_role_on_its_home(client: FlaskClient, tokens: dict) -> None:
    homes = {"reader": "/feed/", "analyst": "/dashboard/", "admin": "/console/"}
    for name, home in homes.items():
        client.post("/logout", data={"csrf_token": page_csrf(client, "/login")})
        response = login(client, name)
        assert response.status_code == 302 and response.headers["Location"].endswith(home), name


def test_wrong_password_is_refused(client: FlaskClient, tokens: dict) -> None:
    response = login(client, "reader", "wrong-password")
    assert response.status_code == 401
    assert "Wrong username or password" in response.get_data(as_text=True)
    assert client.get("/feed/").status_code == 302


def test_login_is_throttled_after_repeated_failures(app: Flask, client: FlaskClient, tokens: dict) -> None:
    limit = app.config["NEWSDESK_SETTINGS"].web.login_rate_limit
    for _ in range(limit):
        assert login(client, "reader", "nope-nope").status_code == 401
    response = login(client, "reader")  # even the right password waits
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(client: FlaskClient, tokens: dict) -> None:
    response = login(client, "reader")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("newsdesk_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_without_csrf_token_is_refused(client: FlaskClient, tokens: dict) -> None:
    response = client.post("/login", data={"username": "reader", "password": PASSWORDS["reader"]})
    assert response.status_code == 400
    assert client.get("/feed/").status_code == 302


def test_forms_refuse_posts_without_csrf(client: FlaskClient, tokens: dict) -> None:
    login(client, "admin")
    for path in ("/console/models/sentiment/retrain", "/dashboard/alerts/1/ack", "/dashboard/rules/",
                 "/console/users", "/feed/onboarding", "/logout"):
        response = client.post(path, data={"note": "x"})
        assert response.status_code == 400, path
        assert "CSRF" in response.get_data(as_text=True), path
    response = client.post("/feed/events", json={"item_id": "m1", "kind": "click"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"


def test_open_redirect_after_login_is_ignored(client: FlaskClient, tokens: dict) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login?next=https://evil.example/", data={
        "username": "reader", "password": PASSWORDS["reader"], "csrf_token": token})
    assert response.headers["Location"].endswith("/feed/")


@pytest.mark.parametrize("role", ["reader", "analyst", "admin"])
def test_role_checks_on_every_page(client: FlaskClient, tokens: dict, role: str) -> None:
    login(client, role)
    for path, needed in PAGES.items():
        status = client.get(path).status_code
        if RANK[role] < RANK[needed]:
            assert status == 403, (role, path, status)
        else:
            assert status != 403, (role, path, status)


def test_pages_need_login(client: FlaskClient, tokens: dict) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path


def test_security_headers_on_pages(client: FlaskClient) -> None:
    response = client.get("/login")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Request-Id"]


def test_admin_creates_user_and_token_in_console(app: Flask, client: FlaskClient, tokens: dict) -> None:
    login(client, "admin")
    token = page_csrf(client, "/console/users")
    response = client.post("/console/users", data={"csrf_token": token, "action": "create", "username": "dave",
                                                   "password": "dave-pass", "role": "analyst"})
    assert response.status_code == 200 and "Created dave" in response.get_data(as_text=True)
    response = client.post("/console/users", data={"csrf_token": token, "action": "token", "username": "dave",
                                                   "kind": "user"})
    html = response.get_data(as_text=True)
    new = html.split('id="new-token">', 1)[1].split("<", 1)[0]
    with db.session_scope(app.config["NEWSDESK_SETTINGS"].database_url) as session:
        assert verify_token(session, new, "user").username == "dave"
    assert client.get("/api/v1/alerts", headers=bearer(new)).status_code == 200
