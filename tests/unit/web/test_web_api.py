"""The JSON API: auth, isolation between readers, every route's bad input, error shapes, OpenAPI coverage."""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import bearer

from newsdesk import db


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_errors_have_one_shape_for_404_405_401(client: FlaskClient, tokens: dict) -> None:
    assert error_of(client.get("/api/v1/nope"))["code"] == "not_found"
    response = client.delete("/api/v1/recommendations", headers=bearer(tokens["reader"]))
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"
    response = client.get("/api/v1/recommendations")
    assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"
    response = client.get("/api/v1/recommendations", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_500_says_only_internal_error_and_request_id(app: Flask, client: FlaskClient, tokens: dict) -> None:
    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    response = client.get("/api/v1/boom")
    err = error_of(response)
    assert response.status_code == 500 and err["message"] == "internal error"
    assert err["details"]["request_id"] == response.headers["X-Request-Id"]
    assert "secret" not in response.get_data(as_text=True)


def test_recommendations_for_own_user(client: FlaskClient, seeded: dict) -> None:
    response = client.get("/api/v1/recommendations?k=5", headers=bearer(seeded["tokens"]["reader"]))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["user"] == "reader" and len(body["items"]) == 5
    assert {"item_id", "title", "score", "reason"} <= set(body["items"][0])


def test_reader_cannot_read_another_users_feed_or_history(client: FlaskClient, seeded: dict) -> None:
    tokens = seeded["tokens"]
    client.post("/api/v1/feedback", headers=bearer(tokens["reader2"]),
                json={"events": [{"item_id": "s1", "kind": "click"}]})
    for path in ("/api/v1/recommendations?user=reader2", "/api/v1/history?user=reader2"):
        response = client.get(path, headers=bearer(tokens["reader"]))
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden", path
    own = client.get("/api/v1/history", headers=bearer(tokens["reader"])).get_json()
    assert own["items"] == []
    theirs = client.get("/api/v1/history?user=reader2", headers=bearer(tokens["admin"])).get_json()
    assert [h["item_id"] for h in theirs["items"]] == ["s1"]


def test_feedback_changes_the_feed(client: FlaskClient, seeded: dict) -> None:
    token = seeded["tokens"]["reader"]
    response = client.post("/api/v1/feedback", headers=bearer(token), json={"events": [
        {"item_id": "s1", "kind": "click"}, {"item_id": "s2", "kind": "click"},
        {"item_id": "m1", "kind": "not_interested"}]})
    assert response.status_code == 202 and response.get_json() == {"logged": 3}
    items = client.get("/api/v1/recommendations?k=4", headers=bearer(token)).get_json()["items"]
    ids = [i["item_id"] for i in items]
    assert "m1" not in ids and "s1" not in ids and ids[0] == "s3"  # the remaining sports story leads


def test_cached_feed_is_per_user_and_follows_feedback_and_revocation(app: Flask, client: FlaskClient,
                                                                       seeded: dict) -> None:
    from newsdesk import db
    from recsys.recommender import get_recommender
    from web.users import list_tokens, revoke_token

    tokens = seeded["tokens"]
    cache = get_recommender(app.config["NEWSDESK_SETTINGS"]).results
    client.post("/api/v1/feedback", headers=bearer(tokens["reader"]), json={"events": [
        {"item_id": "s1", "kind": "click"}, {"item_id": "s2", "kind": "click"}]})
    first = client.get("/api/v1/recommendations?k=4", headers=bearer(tokens["reader"])).get_json()
    hits = cache.hits
    again = client.get("/api/v1/recommendations?k=4", headers=bearer(tokens["reader"])).get_json()
    assert again == first and cache.hits == hits + 1
    other = client.get("/api/v1/recommendations?k=4", headers=bearer(tokens["reader2"])).get_json()
    assert other["user"] == "reader2" and other["items"] != first["items"]  # no history: not the sports feed
    top = first["items"][0]["item_id"]
    client.post("/api/v1/feedback", headers=bearer(tokens["reader"]),
                json={"events": [{"item_id": top, "kind": "not_interested"}]})
    after = client.get("/api/v1/recommendations?k=4", headers=bearer(tokens["reader"])).get_json()
    assert top not in [i["item_id"] for i in after["items"]]
    with db.session_scope(app.config["NEWSDESK_SETTINGS"].database_url) as session:
        for info in list_tokens(session, "reader"):
            revoke_token(session, info.id)
    response = client.get("/api/v1/recommendations?k=4", headers=bearer(tokens["reader"]))
    assert response.status_code == 401


@pytest.mark.parametrize("body", [None, [], {"events": []}, {"events": "x"}, {"events": [1]},
                                  {"events": [{"item_id": "m1", "kind": "like"}]},
                                  {"events": [{"item_id": "", "kind": "click"}]},
                                  {"events": [{"item_id": 5, "kind": "click"}]}])
def test_feedback_bad_input_is_422(client: FlaskClient, tokens: dict, body: object) -> None:
    response = client.post("/api/v1/feedback", headers=bearer(tokens["reader"]),
                           data="not json" if body is None else json.dumps(body), content_type="application/json")
    assert response.status_code == 422 and error_of(response)["code"] == "invalid_input"


def test_feedback_on_unknown_item_is_404(client: FlaskClient, seeded: dict) -> None:
    response = client.post("/api/v1/feedback", headers=bearer(seeded["tokens"]["reader"]),
                           json={"events": [{"item_id": "nope", "kind": "click"}]})
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("query", ["k=0", "k=101", "k=x", "user=" + "u" * 200])
def test_recommendations_bad_query_is_4xx(client: FlaskClient, tokens: dict, query: str) -> None:
    response = client.get(f"/api/v1/recommendations?{query}", headers=bearer(tokens["admin"]))
    assert response.status_code == 422, response.get_json()


def test_ingest_needs_an_ingest_token(client: FlaskClient, tokens: dict) -> None:
    msg = {"id": "a1", "text": "$ABC shares soar after results"}
    assert client.post("/api/v1/ingest", json=msg).status_code == 401
    assert client.post("/api/v1/ingest", json=msg, headers=bearer(tokens["analyst"])).status_code == 401
    response = client.post("/api/v1/ingest", json=msg, headers=bearer(tokens["ingest"]))
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["stored"] == 1
    again = client.post("/api/v1/ingest", json=[msg], headers=bearer(tokens["ingest"])).get_json()
    assert again["stored"] == 0 and again["duplicates"] == 1


def test_ingest_reports_per_item_reasons(client: FlaskClient, tokens: dict) -> None:
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]),
                           json=[{"id": "ok1", "text": "$ABC fine"}, {"id": "bad"}, {"text": 5}])
    body = response.get_json()
    assert response.status_code == 202 and body["stored"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json=[{"nope": 1}, 3])
    err = error_of(response)
    assert response.status_code == 422 and err["details"]["rejected"] == [
        {"index": 1, "reason": "each message must be a JSON object"}]
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json=[{"nope": 1}])
    assert response.status_code == 422 and error_of(response)["details"]["rejected"][0]["index"] == 0


def test_ingest_over_the_size_limit_is_413(app: Flask, client: FlaskClient, tokens: dict) -> None:
    limit = app.config["NEWSDESK_SETTINGS"].monitor.ingest_max_bytes
    body = json.dumps([{"id": str(i), "text": "x" * 1000} for i in range(limit // 1000 + 5)])
    response = client.post("/api/v1/ingest", data=body, content_type="application/json",
                           headers=bearer(tokens["ingest"]))
    assert response.status_code == 413 and error_of(response)["code"] == "payload_too_large"
    response = client.post("/api/v1/ingest", data="{bad", content_type="application/json",
                           headers=bearer(tokens["ingest"]))
    assert response.status_code == 422
    response = client.post("/api/v1/ingest", data="a=b", headers=bearer(tokens["ingest"]))
    assert response.status_code == 422


def test_alerts_list_filters_ack_and_silence(client: FlaskClient, seeded: dict) -> None:
    token = seeded["tokens"]["analyst"]
    alert_id = seeded["alerts"][0]
    body = client.get("/api/v1/alerts?state=firing&ticker=xyz&limit=1", headers=bearer(token)).get_json()
    assert body["total"] >= 1 and body["items"][0]["ticker"] == "XYZ" and body["limit"] == 1
    assert client.get("/api/v1/alerts?ticker=NONE", headers=bearer(token)).get_json()["total"] == 0
    detail = client.get(f"/api/v1/alerts/{alert_id}", headers=bearer(token)).get_json()
    assert any("bankruptcy" in m["text"] for m in detail["evidence"])
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", headers=bearer(token), json={"note": "checked"})
    assert acked.status_code == 200 and acked.get_json()["acknowledged_by"] == "analyst"
    listed = client.get("/api/v1/alerts?state=acknowledged", headers=bearer(token)).get_json()
    assert [a["id"] for a in listed["items"]] == [alert_id]
    silenced = client.post(f"/api/v1/alerts/{alert_id}/silence", headers=bearer(token),
                           json={"duration_minutes": 60, "comment": "known"})
    assert silenced.status_code == 201 and silenced.get_json()["matchers"]["ticker"] == "XYZ"


@pytest.mark.parametrize("query", ["state=boiling", "rule_id=x", "since=yesterday", "limit=0", "offset=-1",
                                   "ticker=" + "A" * 20])
def test_alerts_bad_filters_are_422(client: FlaskClient, tokens: dict, query: str) -> None:
    response = client.get(f"/api/v1/alerts?{query}", headers=bearer(tokens["analyst"]))
    assert response.status_code == 422 and error_of(response)["code"] == "invalid_input"


@pytest.mark.parametrize("body", [{}, {"duration_minutes": 0}, {"duration_minutes": "5"}, {"ends_at": "soon"},
                                  {"ends_at": "2001-01-01T00:00:00Z"}, {"duration_minutes": 5, "comment": 3}])
def test_silence_bad_input_is_422(client: FlaskClient, seeded: dict, body: dict) -> None:
    response = client.post(f"/api/v1/alerts/{seeded['alerts'][0]}/silence", json=body,
                           headers=bearer(seeded["tokens"]["analyst"]))
    assert response.status_code == 422, response.get_json()


def test_alerts_need_analyst_and_unknown_alert_is_404(client: FlaskClient, seeded: dict) -> None:
    tokens = seeded["tokens"]
    assert client.get("/api/v1/alerts", headers=bearer(tokens["reader"])).status_code == 403
    assert client.post("/api/v1/alerts/1/ack", json={}, headers=bearer(tokens["reader"])).status_code == 403
    response = client.post("/api/v1/alerts/999/ack", json={"note": ""}, headers=bearer(tokens["analyst"]))
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert client.post("/api/v1/alerts/1/ack", json={"note": 5}, headers=bearer(tokens["analyst"])).status_code == 422


def test_models_list_promote_rollback(client: FlaskClient, seeded: dict) -> None:
    admin = bearer(seeded["tokens"]["admin"])
    assert client.get("/api/v1/models", headers=bearer(seeded["tokens"]["analyst"])).status_code == 403
    versions = client.get("/api/v1/models?task=sentiment", headers=admin).get_json()["items"]
    assert {v["version"]: v["is_current"] for v in versions} == {"s1": True, "s2": False}
    promoted = client.post("/api/v1/models/sentiment/promote", json={"version": "s2"}, headers=admin)
    assert promoted.status_code == 200 and promoted.get_json()["is_current"] is True
    back = client.post("/api/v1/models/sentiment/rollback", headers=admin)
    assert back.status_code == 200 and back.get_json()["version"] == "s1"
    assert client.post("/api/v1/models/sentiment/promote", json={"version": "zz"}, headers=admin).status_code == 404
    assert client.post("/api/v1/models/sentiment/promote", json={}, headers=admin).status_code == 422
    assert client.post("/api/v1/models/poetry/rollback", headers=admin).status_code == 404
    assert client.get("/api/v1/models?task=poetry", headers=admin).status_code == 404
    queued = client.post("/api/v1/models/recsys/retrain", headers=admin)
    assert queued.status_code == 202
    runs = client.get("/api/v1/models/runs", headers=admin).get_json()["items"]
    assert runs[0]["id"] == queued.get_json()["run_id"] and runs[0]["status"] == "queued"


def test_openapi_documents_every_api_route(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "api.boom":
            path = rule.rule[len("/api/v1"):].replace("<id:", "{").replace("<", "{").replace(">", "}")
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed


@pytest.mark.redis
def test_ingest_queues_onto_the_stream_when_redis_is_configured(redis_settings, db_url: str) -> None:
    import redis
    from web_support import make_users

    from web import create_app

    tokens = make_users(db_url)
    client = create_app(redis_settings, testing=True).test_client()
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]),
                           json=[{"id": "r1", "text": "$ABC up"}, {"id": "r2", "text": "$ABC down"}])
    assert response.status_code == 202 and response.get_json()["queued"] == 2
    conn = redis.Redis.from_url(redis_settings.redis_url)
    assert conn.xlen(redis_settings.monitor.stream_name) == 2
    conn.close()


@pytest.mark.postgres
def test_users_tokens_and_api_on_postgres(pg_settings) -> None:
    from web_support import make_users

    from web import create_app

    tokens = make_users(pg_settings.database_url)
    client = create_app(pg_settings, testing=True).test_client()
    response = client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json={"id": "p1", "text": "$ABC ok"})
    assert response.status_code == 202 and response.get_json()["stored"] == 1
    body = client.get("/api/v1/alerts?limit=5", headers=bearer(tokens["analyst"])).get_json()
    assert body["total"] == 0 and body["items"] == []
    assert client.get("/api/v1/alerts/2147483647", headers=bearer(tokens["analyst"])).status_code == 404
    assert client.get("/api/v1/history?user=reader2", headers=bearer(tokens["reader"])).status_code == 403


API_ROLES = [("GET", "/api/v1/alerts", "analyst"), ("GET", "/api/v1/alerts/1", "analyst"),
             ("POST", "/api/v1/alerts/1/ack", "analyst"), ("POST", "/api/v1/alerts/1/silence", "analyst"),
             ("GET", "/api/v1/messages", "analyst"), ("GET", "/api/v1/topics", "analyst"),
             ("GET", "/api/v1/rules", "analyst"), ("POST", "/api/v1/rules", "analyst"),
             ("PATCH", "/api/v1/rules/1", "analyst"),
             ("GET", "/api/v1/models", "admin"), ("GET", "/api/v1/models/runs", "admin"),
             ("POST", "/api/v1/models/sentiment/promote", "admin"),
             ("POST", "/api/v1/models/sentiment/rollback", "admin"),
             ("POST", "/api/v1/models/sentiment/retrain", "admin")]


@pytest.mark.parametrize("role", ["reader", "analyst"])
def test_role_checks_on_every_api_route(client: FlaskClient, tokens: dict, role: str) -> None:
    rank = {"reader": 0, "analyst": 1, "admin": 2}
    for method, path, needed in API_ROLES:
        response = client.open(path, method=method, json={}, headers=bearer(tokens[role]))
        if rank[role] < rank[needed]:
            assert response.status_code == 403, (role, path, response.status_code)
        else:
            assert response.status_code != 403, (role, path)
    for method, path in (("GET", "/api/v1/recommendations"), ("GET", "/api/v1/history"), ("POST", "/api/v1/feedback")):
        assert client.open(path, method=method, json={}).status_code == 401
    assert client.post("/api/v1/ingest", json={}, headers=bearer(tokens["admin"])).status_code == 401


def test_topic_fields_rules_and_filters_in_the_api(client: FlaskClient, tokens: dict, db_url: str) -> None:
    from web_support import KeywordClassifier

    from monitor import service as monitor

    analyst, legal = bearer(tokens["analyst"]), "Legal | Regulation"
    created = client.post("/api/v1/rules", headers=analyst, json={
        "name": "legal news", "kind": "keyword", "params": {"phrases": ["bankruptcy"]}, "topics": [legal]})
    assert created.status_code == 201 and created.get_json()["topics"] == [legal]
    rule_id = created.get_json()["id"]
    with db.session_scope(db_url) as session:
        monitor.ingest_messages(session, KeywordClassifier(), [
            {"id": "a", "text": "$XYZ files for bankruptcy protection"},
            {"id": "b", "text": "$XYZ quarterly numbers, shares soar"}], "test")
    alerts = client.get("/api/v1/alerts?topic=" + legal, headers=analyst).get_json()
    assert alerts["total"] == 1 and alerts["items"][0]["topic"] == legal and alerts["items"][0]["rule_id"] == rule_id
    assert client.get("/api/v1/alerts?topic=Earnings", headers=analyst).get_json()["total"] == 0
    detail = client.get(f"/api/v1/alerts/{alerts['items'][0]['id']}", headers=analyst).get_json()
    assert [(m["topic"], m["topic_score"]) for m in detail["evidence"]] == [(legal, 0.8)]
    messages = client.get("/api/v1/messages?topic=Earnings", headers=analyst).get_json()["items"]
    assert [(m["id"] is not None, m["topic"], m["label"]) for m in messages] == [(True, "Earnings", "positive")]
    assert client.get("/api/v1/topics", headers=analyst).get_json()["items"] == ["Earnings", legal]
    changed = client.patch(f"/api/v1/rules/{rule_id}", headers=analyst, json={"topics": []})
    assert changed.status_code == 200 and changed.get_json()["topics"] == []
    assert client.get("/api/v1/alerts?topic=" + legal + "&state=firing", headers=analyst).get_json()["total"] == 0
    for body in ({"topics": "Earnings"}, {"topics": ["x" * 65]}, {"colour": "red"}):
        response = client.patch(f"/api/v1/rules/{rule_id}", headers=analyst, json=body)
        assert response.status_code == 422 and error_of(response)["code"] == "invalid_input", body
    assert client.post("/api/v1/rules", headers=analyst, json={"name": "x"}).status_code == 422
    assert client.patch("/api/v1/rules/999", headers=analyst, json={}).status_code == 404
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert {"topic", "topic_score"} <= set(schemas["Message"]["properties"])
    assert "topic" in schemas["Alert"]["properties"] and "topics" in schemas["Rule"]["properties"]


def test_dead_letters_bulk_replay_and_undelivered_notifications(client: FlaskClient, app: Flask, seeded: dict) -> None:
    from monitor import service
    from monitor.tables import Notification
    from web.auth import db_session

    tokens = seeded["tokens"]
    client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json=[{"id": "ok", "text": "$A"}, {"id": 1}])
    with app.app_context(), db_session() as session:
        service.add_dead_letter(session, "test", "process", "failed 6 deliveries (limit 5)",
                                '{"id": "lost", "text": "$XYZ numbers today"}')
        note = session.query(Notification).first()
        note.url, note.status, note.attempts = "http://127.0.0.1:9/x", "failed", [{"status_code": 503, "error": ""}]
    assert client.post("/api/v1/dead-letters/replay", json={}, headers=bearer(tokens["reader"])).status_code == 403
    bad = client.post("/api/v1/dead-letters/replay", json={"stage": "nope"}, headers=bearer(tokens["analyst"]))
    assert bad.status_code == 422 and error_of(bad)["details"]["field"] == "stage"
    response = client.post("/api/v1/dead-letters/replay", json={}, headers=bearer(tokens["analyst"]))
    assert response.status_code == 200 and response.get_json()["replayed"] == 1
    assert response.get_json()["still_invalid"] == 1  # {"id": 1} has no text: stays open
    undelivered = client.get("/api/v1/notifications/undelivered", headers=bearer(tokens["analyst"])).get_json()
    assert undelivered["total"] == 1 and undelivered["items"][0]["last_error"] == "HTTP 503"
    bad = client.post("/api/v1/notifications/retry", json={"ids": ["x"]}, headers=bearer(tokens["analyst"]))
    assert bad.status_code == 422
    retried = client.post("/api/v1/notifications/retry", json={}, headers=bearer(tokens["analyst"]))
    assert retried.get_json() == {"queued": 1}


def test_openapi_names_the_ingest_fields(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    message = doc["components"]["schemas"]["IngestMessage"]
    assert message["required"] == ["text"]
    assert {"text", "id", "ts", "source", "ticker"} <= set(message["properties"])
    assert message["properties"]["text"]["type"] == "string"
    body = doc["paths"]["/ingest"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/IngestMessage"} in body["oneOf"]


def test_plotly_is_served_gzipped_with_caching_headers(client: FlaskClient) -> None:
    import gzip

    from web.health import PLOTLY_JS

    response = client.get("/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.status_code == 200 and response.headers["Content-Encoding"] == "gzip"
    assert len(response.data) < PLOTLY_JS.stat().st_size / 2
    assert gzip.decompress(response.data) == PLOTLY_JS.read_bytes()
    assert "max-age=86400" in response.headers["Cache-Control"] and "Accept-Encoding" in response.headers["Vary"]
    again = client.get("/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip",
                                                         "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    plain = client.get("/vendor/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.data == PLOTLY_JS.read_bytes()
