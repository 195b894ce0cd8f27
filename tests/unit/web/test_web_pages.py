"""Pages on real seeded data: feed (impressions, clicks, not interested, onboarding), escaping, dashboard, SSE,
rules, dead letters, model console, health and metrics."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient
from web_support import XSS, bearer, login, page_csrf

from newsdesk import db


def history(client: FlaskClient, token: str) -> list[tuple[str, str]]:
    items = client.get("/api/v1/history?limit=100", headers=bearer(token)).get_json()["items"]
    return [(h["item_id"], h["kind"]) for h in items]


def impressions(app: Flask, user: str) -> int:
    from sqlalchemy import text

    with db.get_engine(app.config["NEWSDESK_SETTINGS"].database_url).connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM interactions WHERE user_id = :u AND kind = 'impression'"),
                            {"u": user}).scalar()


def test_new_reader_is_onboarded_then_sees_a_feed_of_their_topics(app: Flask, client: FlaskClient,
                                                                   seeded: dict) -> None:
    login(client, "reader")
    response = client.get("/feed/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/feed/onboarding")
    page = client.get("/feed/onboarding").get_data(as_text=True)
    assert 'value="sports"' in page and 'value="markets"' in page
    token = page_csrf(client, "/feed/onboarding")
    response = client.post("/feed/onboarding", data={"csrf_token": token, "topic": ["sports"], "tickers": "aapl"})
    assert response.status_code == 302
    html = client.get("/feed/").get_data(as_text=True)
    first = html.split('class="item card" data-item-id="', 1)[1].split('"', 1)[0]
    assert first.startswith("s"), first  # a sports story leads
    assert "$AAPL" in html
    # cards show the snippet and the source (the link's host), not the raw ranking score (#17)
    assert 'class="score"' not in html and '<span class="source">example.com</span>' in html
    assert html.count('<p class="snippet">') > 0
    assert impressions(app, "reader") == html.count('class="item card"') > 0


def test_feed_escapes_untrusted_titles(client: FlaskClient, seeded: dict) -> None:
    login(client, "reader2")
    client.post("/feed/onboarding", data={"csrf_token": page_csrf(client, "/feed/onboarding"), "topic": ["earnings"]})
    html = client.get("/feed/").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;" in html
    assert XSS not in html


def test_click_and_not_interested_are_logged_for_the_logged_in_reader(client: FlaskClient, seeded: dict) -> None:
    login(client, "reader")
    client.post("/feed/onboarding", data={"csrf_token": page_csrf(client, "/feed/onboarding"), "topic": ["tech"]})
    token = page_csrf(client, "/feed/")
    for item_id, kind in (("t1", "click"), ("t2", "not_interested")):
        response = client.post("/feed/events", json={"item_id": item_id, "kind": kind}, headers={"X-CSRFToken": token})
        assert response.status_code == 202, response.get_json()
    assert history(client, seeded["tokens"]["reader"]) == [("t2", "not_interested"), ("t1", "click")]
    assert history(client, seeded["tokens"]["reader2"]) == []
    html = client.get("/feed/").get_data(as_text=True)
    assert 'data-item-id="t2"' not in html and 'data-item-id="t1"' not in html
    bad = client.post("/feed/events", json={"item_id": "t1", "kind": "impression"}, headers={"X-CSRFToken": token})
    assert bad.status_code == 422


def test_dashboard_lists_alerts_escaped_and_filters(client: FlaskClient, seeded: dict) -> None:
    login(client, "analyst")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert f'data-alert-id="{seeded["alerts"][0]}"' in html and "$XYZ" in html
    assert XSS not in html and "&lt;script&gt;" in html
    assert 'src="/vendor/plotly.min.js"' in html
    empty = client.get("/dashboard/?state=resolved").get_data(as_text=True)
    assert "No alerts match." in empty
    series = client.get("/dashboard/series.json?ticker=XYZ&hours=24").get_json()
    assert sum(r["total"] for r in series["rows"]) == 7 and sum(r["negative"] for r in series["rows"]) == 1


def test_dashboard_per_topic_chart_filters_and_rule_scope(client: FlaskClient, seeded: dict) -> None:
    legal = "Legal | Regulation"  # what the seeding classifier gives the bankruptcy story; the rest is "Earnings"
    login(client, "analyst")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'id="topic-chart"' in html and f'<option value="{legal}"' in html and "Earnings</span>" in html
    groups = html.split('id="alert-groups"', 1)[1].split("</section>", 1)[0]
    assert groups.count('class="group"') == 1 and 'data-group="XYZ"' in groups  # unscoped rules: one per ticker
    filtered = client.get("/dashboard/?topic=" + legal).get_data(as_text=True)
    messages = filtered.split('id="messages"', 1)[1]
    assert "bankruptcy" in messages and "annual meeting" not in messages
    series = client.get("/dashboard/series.json?by=topic&hours=24").get_json()
    totals = {}
    for row in series["rows"]:
        totals[row["topic"]] = totals.get(row["topic"], 0) + row["total"]
    assert series["by"] == "topic" and totals == {"Earnings": 6, legal: 1}
    one = client.get("/dashboard/series.json?by=topic&hours=24&topic=Earnings").get_json()
    assert {r["topic"] for r in one["rows"]} == {"Earnings"} and sum(r["negative"] for r in one["rows"]) == 0
    token = page_csrf(client, "/dashboard/rules/")
    response = client.post("/dashboard/rules/", data={
        "csrf_token": token, "name": "Legal burst", "kind": "negative_burst", "topics": legal,
        "topics_extra": "Earnings; M&A | Investments", "repeat_minutes": "60", "enabled": "on"},
        follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Rule created." in page and '<span class="chip topic">M&amp;A | Investments</span>' in page
    rules = client.get("/api/v1/rules", headers=bearer(seeded["tokens"]["analyst"])).get_json()["items"]
    assert next(r for r in rules if r["name"] == "Legal burst")["topics"] == ["Earnings", legal, "M&A | Investments"]
    detail = client.get(f"/dashboard/alerts/{seeded['alerts'][0]}").get_data(as_text=True)
    assert "not scoped to topics" in detail and f'<td data-role="topic">{legal} ' in detail  # evidence topic


def test_alert_detail_ack_with_note_and_silence(client: FlaskClient, seeded: dict) -> None:
    alert_id = seeded["alerts"][0]
    login(client, "analyst")
    html = client.get(f"/dashboard/alerts/{alert_id}").get_data(as_text=True)
    assert "bankruptcy" in html and "0.90" in html  # evidence with its scores
    token = page_csrf(client, f"/dashboard/alerts/{alert_id}")
    client.post(f"/dashboard/alerts/{alert_id}/ack", data={"csrf_token": token, "note": "called IR <b>now</b>"})
    html = client.get(f"/dashboard/alerts/{alert_id}").get_data(as_text=True)
    assert ">acknowledged<" in html and "called IR &lt;b&gt;now&lt;/b&gt;" in html
    response = client.post(f"/dashboard/alerts/{alert_id}/silence", data={"csrf_token": token, "hours": "4"},
                           follow_redirects=True)
    assert "Silenced $XYZ · rule “Legal or bankruptcy news” for 4 h." in response.get_data(as_text=True)
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'id="silence-table"' in html and ">silenced<" in html
    silences = html.split('id="silence-table"', 1)[1].split("</table>", 1)[0]
    assert "$XYZ" in silences and "rule “" in silences and "rule_id" not in silences  # matchers read as text
    silence_id = int(html.split("/dashboard/silences/", 1)[1].split("/", 1)[0])
    response = client.post(f"/dashboard/silences/{silence_id}/expire", data={"csrf_token": token},
                           follow_redirects=True)
    assert f"Silence #{silence_id} ended." in response.get_data(as_text=True)
    assert 'id="silence-table"' not in response.get_data(as_text=True)
    assert client.get("/dashboard/alerts/999").status_code == 404


def test_event_stream_sends_an_alert_change(app: Flask, client: FlaskClient, seeded: dict) -> None:
    alert_id = seeded["alerts"][0]
    login(client, "analyst")
    response = client.get("/events/stream")
    assert response.mimetype == "text/event-stream"
    chunks = response.response  # the generator: first the hello with the starting cursor
    first = next(chunks)
    first = first.decode() if isinstance(first, bytes) else first
    assert "event: hello" in first
    acked = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "live"},
                        headers=bearer(seeded["tokens"]["analyst"]))
    assert acked.status_code == 200
    body = "".join(c.decode() if isinstance(c, bytes) else c for c in chunks)
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    alerts = [e["alert"] for e in events if e.get("type") == "alert"]
    assert alerts and alerts[-1]["id"] == alert_id and alerts[-1]["acknowledged_by"] == "analyst"


def test_rule_editor_creates_updates_and_rejects_bad_params(client: FlaskClient, seeded: dict) -> None:
    login(client, "analyst")
    token = page_csrf(client, "/dashboard/rules/")
    response = client.post("/dashboard/rules/", data={"csrf_token": token, "name": "Tesla burst",
                                                      "kind": "negative_burst", "tickers": "TSLA",
                                                      "severity": "critical", "repeat_minutes": "60",
                                                      "p.min_negative": "6", "p.window_minutes": "",
                                                      "enabled": "on"},
                           follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Rule created." in html and "Tesla burst" in html
    rule = next(r for r in client.get("/api/v1/rules", headers=bearer(seeded["tokens"]["analyst"])).get_json()["items"]
                if r["name"] == "Tesla burst")
    assert rule["params"]["min_negative"] == 6 and rule["params"]["window_minutes"] == 360  # blank: the default
    form = html.split(f'action="/dashboard/rules/{rule["id"]}"', 1)[1].split("</form>", 1)[0]
    assert 'name="p.min_negative" inputmode="decimal" size="6" placeholder="4" value="6"' in form
    assert 'name="p.phrases"' not in form  # only the parameters of its own kind
    response = client.post("/dashboard/rules/", data={"csrf_token": token, "name": "Bad", "kind": "negative_burst",
                                                      "p.min_share": "lots"}, follow_redirects=True)
    assert "negative share at least (0-1) must be a number, not &#39;lots&#39;" in response.get_data(as_text=True)
    response = client.post("/dashboard/rules/", data={"csrf_token": token, "name": "Bad", "kind": "negative_burst",
                                                      "p.min_share": "7"}, follow_redirects=True)
    assert "Rule created." not in response.get_data(as_text=True) and "between" in response.get_data(as_text=True)
    response = client.post("/dashboard/rules/", data={"csrf_token": token, "name": "Words", "kind": "keyword",
                                                      "p.phrases": "recall, SEC probe", "p.sentiment": "any"},
                           follow_redirects=True)
    assert "Rule created." in response.get_data(as_text=True)
    words = next(r for r in client.get("/api/v1/rules", headers=bearer(seeded["tokens"]["analyst"])).get_json()[
        "items"] if r["name"] == "Words")
    assert words["params"]["phrases"] == ["recall", "SEC probe"] and words["params"]["sentiment"] == "any"


def test_dead_letters_listed_and_replayed(client: FlaskClient, seeded: dict) -> None:
    client.post("/api/v1/ingest", headers=bearer(seeded["tokens"]["ingest"]),
                json=[{"id": "ok", "text": "$A"}, {"id": 1}])
    login(client, "analyst")
    html = client.get("/dashboard/dead-letters").get_data(as_text=True)
    assert "missing field" in html and "Replay" in html
    dead_id = int(html.split('/dashboard/dead-letters/', 1)[1].split('/replay', 1)[0])
    response = client.post(f"/dashboard/dead-letters/{dead_id}/replay",
                           data={"csrf_token": page_csrf(client, "/dashboard/dead-letters")}, follow_redirects=True)
    assert "still invalid" in response.get_data(as_text=True)  # the payload is still bad: kept, reason shown


def test_dead_letters_edit_and_replay_keeps_the_edit_after_an_error_and_dismiss(client: FlaskClient,
                                                                                seeded: dict) -> None:
    tokens = seeded["tokens"]
    client.post("/api/v1/ingest", headers=bearer(tokens["ingest"]), json=[{"id": 1}, {"id": 2}])
    login(client, "analyst")
    html = client.get("/dashboard/dead-letters").get_data(as_text=True)
    ids = sorted(int(part.split("/", 1)[0]) for part in html.split('/dashboard/dead-letters/')[1:]
                 if part.split("/", 1)[1].startswith("dismiss"))
    assert len(ids) == 2 and "Edit &amp; replay" in html
    token = page_csrf(client, "/dashboard/dead-letters")
    typed = '{"id": "e1", "text": "$XYZ hand-fixed'  # not JSON yet: still invalid
    response = client.post(f"/dashboard/dead-letters/{ids[0]}/replay", data={"csrf_token": token, "payload": typed})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "still invalid" in html and "$XYZ hand-fixed</textarea>" in html  # what was typed stays
    response = client.post(f"/dashboard/dead-letters/{ids[0]}/replay",
                           data={"csrf_token": token, "payload": typed + '"}'}, follow_redirects=True)
    assert f"Dead letter #{ids[0]} replayed as message" in response.get_data(as_text=True)
    response = client.post(f"/dashboard/dead-letters/{ids[1]}/dismiss",
                           data={"csrf_token": token, "note": "test junk"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert f"Dead letter #{ids[1]} dismissed." in html and "No open dead letters" in html
    html = client.get("/dashboard/dead-letters?status=all").get_data(as_text=True)
    assert "dismissed: test junk" in html and "by analyst" in html and "edited; received:" in html
    # the API: the same actions, 409 once closed
    again = client.post(f"/api/v1/dead-letters/{ids[1]}/dismiss", json={}, headers=bearer(tokens["analyst"]))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert client.post(f"/api/v1/dead-letters/{ids[1]}/replay", json={},
                       headers=bearer(tokens["reader"])).status_code == 403
    assert client.post("/api/v1/dead-letters/99999/dismiss", json={},
                       headers=bearer(tokens["analyst"])).status_code == 404


def test_console_shows_versions_and_promotes(client: FlaskClient, seeded: dict) -> None:
    login(client, "admin")
    html = client.get("/console/").get_data(as_text=True)
    assert "macro_f1" in html and "0.8400" in html and 'data-version="s2"' in html
    assert 'serves on <b class="serving-path">torch-' in html
    token = page_csrf(client, "/console/")
    response = client.post("/console/models/sentiment/promote", data={"csrf_token": token, "version": "s2"},
                           follow_redirects=True)
    assert "sentiment s2 is now current." in response.get_data(as_text=True)
    response = client.post("/console/models/sentiment/retrain", data={"csrf_token": token}, follow_redirects=True)
    assert "Queued sentiment training run" in response.get_data(as_text=True)
    assert 'id="runs"' in response.get_data(as_text=True) and ">queued<" in response.get_data(as_text=True)


def test_health_readiness_and_metrics(client: FlaskClient, seeded: dict) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    checks = {c["name"]: c["ok"] for c in ready.get_json()["checks"]}
    assert checks["database"] and checks["index"] and checks["models"] and ready.status_code == 200
    inference = ready.get_json()["inference"]  # the test settings serve on the torch path
    assert inference["sentiment"] in ("torch-float32", "torch-bfloat16") and inference["topic"] == ""
    client.get("/api/v1/openapi.json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'newsdesk_http_request_duration_seconds_bucket{endpoint="/api/v1/openapi.json",le="+Inf"} 1' in text
    assert "newsdesk_messages_processed 7" in text and 'newsdesk_alerts{state="firing"} 1' in text
    assert 'newsdesk_model_versions{task="sentiment",version="s1",status="current"} 1' in text


def test_without_data_pages_say_not_available_instead_of_faking(client: FlaskClient, tokens: dict) -> None:
    ready = client.get("/readyz")
    checks = {c["name"]: c for c in ready.get_json()["checks"]}
    assert ready.status_code == 503 and checks["database"]["ok"] and not checks["index"]["ok"]
    login(client, "reader")
    client.post("/feed/onboarding", data={"csrf_token": page_csrf(client, "/feed/onboarding"), "topic": ["x"]})
    response = client.get("/feed/")
    assert response.status_code == 503 and "Feed not available" in response.get_data(as_text=True)
    response = client.get("/api/v1/recommendations", headers=bearer(tokens["reader"]))
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "unavailable"


GARBAGE = ["", "0", "-1", "99999999999999999999", "x", "%00", "<script>", "[]", "1e9", "firing"]


def test_pages_survive_garbage_query_strings(client: FlaskClient, seeded: dict) -> None:
    login(client, "admin")
    pages = ["/feed/", "/dashboard/", "/dashboard/series.json", "/dashboard/dead-letters", "/dashboard/rules/",
             "/console/", "/console/users"]
    for path in pages:
        for value in GARBAGE:
            query = "&".join(f"{k}={value}" for k in ("state", "ticker", "topic", "by", "rule_id", "hours", "page",
                                                      "k", "user"))
            status = client.get(f"{path}?{query}").status_code
            assert status < 500, (path, value, status)
    token = page_csrf(client, "/feed/")
    for body in ([1, 2], "x", None, {"item_id": ["a"], "kind": "click"}):
        response = client.post("/feed/events", json=body, headers={"X-CSRFToken": token})
        assert response.status_code == 422, body
    for path in ("/dashboard/alerts/99999999999", "/dashboard/alerts/0", "/api/v1/alerts/-1"):
        assert client.get(path).status_code == 404, path


def test_alert_facts_are_text_times_say_utc_and_skipped_is_not_pending(client: FlaskClient, seeded: dict) -> None:
    from web_support import KeywordClassifier

    from monitor import service as monitor
    from newsdesk.db import utcnow

    url = client.application.config["NEWSDESK_SETTINGS"].database_url
    with db.session_scope(url) as session:
        monitor.ingest_messages(session, KeywordClassifier(), [
            {"id": "es1", "text": "Las acciones de la empresa suben por las ventas", "ticker": "XYZ",
             "ts": utcnow().isoformat() + "Z"}], "test")
        keyword = next(a for a in monitor.list_alerts(session)[0] if a.kind == "keyword")
    login(client, "analyst")
    detail = client.get(f"/dashboard/alerts/{keyword.id}").get_data(as_text=True)
    assert "<dd class=\"mono\">bankruptcy</dd>" in detail and "[&#39;" not in detail and "['" not in detail
    assert " UTC</dd>" in detail  # started / last evaluated say which clock
    html = client.get("/dashboard/").get_data(as_text=True)
    row = html.split('id="messages"', 1)[1].split("Las acciones", 1)[0].rsplit("<tr", 1)[1]
    assert ">skipped<" in row and ">pending<" not in row
    assert 'title="' in html and " UTC\">" in html


def test_rule_editor_keeps_what_was_typed_after_an_error(client: FlaskClient, seeded: dict) -> None:
    login(client, "analyst")
    token = page_csrf(client, "/dashboard/rules/")
    response = client.post("/dashboard/rules/", data={
        "csrf_token": token, "name": "Half typed", "kind": "volume_spike", "tickers": "ABC, DEF",
        "topics_extra": "Earnings", "severity": "critical", "repeat_minutes": "45", "p.min_ratio": "-1",
        "p.window_minutes": "90"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "min_ratio" in html
    new_form = html.rsplit('class="rule-form"', 1)[1]
    assert 'value="Half typed"' in new_form and 'value="ABC, DEF"' in new_form and 'value="45"' in new_form
    assert 'value="Earnings"' in new_form
    spike = new_form.split('data-kind="volume_spike"', 1)[1].split("</fieldset>", 1)[0]
    assert 'name="p.min_ratio" inputmode="decimal" size="6" placeholder="3.0" value="-1"' in spike
    assert 'name="p.window_minutes" inputmode="decimal" size="6" placeholder="60" value="90"' in spike
    assert "<option selected>volume_spike</option>" in new_form and "<option selected>critical</option>" in new_form
    rule = client.get("/api/v1/rules", headers=bearer(seeded["tokens"]["analyst"])).get_json()["items"][0]
    response = client.post(f"/dashboard/rules/{rule['id']}", data={
        "csrf_token": token, "name": "Renamed", "p.window_minutes": "soon", "repeat_minutes": "60"})
    edit_form = response.get_data(as_text=True).split(f'action="/dashboard/rules/{rule["id"]}"', 1)[1]
    assert response.status_code == 422 and 'value="Renamed"' in edit_form.split("</form>", 1)[0]


def test_event_stream_messages_carry_the_new_rows(client: FlaskClient, seeded: dict) -> None:
    from web_support import KeywordClassifier

    from monitor import service as monitor

    url = client.application.config["NEWSDESK_SETTINGS"].database_url
    with db.session_scope(url) as session:
        _, cursor = monitor.changes_since(session, None)
        monitor.ingest_messages(session, KeywordClassifier(), [{"id": "sse1", "text": "$QQQ court date set"}], "t")
        events, _ = monitor.changes_since(session, cursor)
    batch = next(e for e in events if e["type"] == "messages")
    assert batch["count"] == 1 and batch["messages"][0]["text"] == "$QQQ court date set"
    assert batch["messages"][0]["topic"] == "Legal | Regulation" and batch["messages"][0]["ts"].endswith("Z")


def test_event_stream_says_when_a_shown_pending_message_is_classified(client: FlaskClient, seeded: dict) -> None:
    from web_support import KeywordClassifier

    from monitor import service as monitor

    url = client.application.config["NEWSDESK_SETTINGS"].database_url
    with db.session_scope(url) as session:
        monitor.ingest_messages(session, None, [{"id": "wait1", "text": "$QQQ sued over its accounts"}], "t")
    with db.session_scope(url) as session:
        _, cursor = monitor.changes_since(session, None)  # the page shows it as pending
        events, cursor = monitor.changes_since(session, cursor)
        assert events == []
        assert monitor.classify_pending(session, KeywordClassifier()) == 1
    with db.session_scope(url) as session:
        events, cursor = monitor.changes_since(session, cursor)
        classified = [e for e in events if e["type"] == "classified"]
        assert [m["text"] for e in classified for m in e["messages"]] == ["$QQQ sued over its accounts"]
        assert classified[0]["messages"][0]["label"] and classified[0]["messages"][0]["status"] != "pending"
        assert monitor.changes_since(session, cursor)[0] == []  # said once


def test_dead_letters_page_replays_all_and_retries_notifications(client: FlaskClient, app, seeded: dict) -> None:
    from monitor.tables import Notification
    from web.auth import db_session

    with app.app_context(), db_session() as session:
        note = session.query(Notification).first()
        note.url, note.status = "http://127.0.0.1:9/x", "failed"
        note.attempts = [{"status_code": None, "error": "ConnectionRefusedError: refused"}]
    client.post("/api/v1/ingest", headers=bearer(seeded["tokens"]["ingest"]), json=[{"id": 1}])
    login(client, "analyst")
    html = client.get("/dashboard/dead-letters").get_data(as_text=True)
    assert 'id="undelivered"' in html and "ConnectionRefusedError" in html and "Replay all open" in html
    token = page_csrf(client, "/dashboard/dead-letters")
    response = client.post("/dashboard/dead-letters/replay-all", data={"csrf_token": token}, follow_redirects=True)
    assert "Replayed 0 dead letters (1 still invalid)." in response.get_data(as_text=True)
    response = client.post("/dashboard/notifications/retry", data={"csrf_token": token}, follow_redirects=True)
    assert "1 notification queued for another try." in response.get_data(as_text=True)
    with app.app_context(), db_session() as session:
        assert session.query(Notification).filter_by(status="pending").count() >= 1


def test_console_shows_the_gate_decision_with_its_figures(client: FlaskClient, seeded: dict, tmp_path) -> None:
    """A kept candidate says why, with the candidate's and the champion's figures and the margin (#17)."""
    from finetune import gate, registry
    from finetune.tables import TrainingRun
    from newsdesk.db import utcnow

    reason = "kept: macro_f1 0.6880 does not beat current 0.7326 by 0.0050"
    decision = gate.GateDecision(promote=False, task="sentiment", metric="macro_f1", candidate=0.688,
                                 champion=0.7326, margin=0.005, reason=reason)
    with db.session_scope(client.application.config["NEWSDESK_SETTINGS"].database_url) as session:
        registry.register(session, task="sentiment", version="s9", path=tmp_path,
                          metrics={"macro_f1": 0.688, "gate": decision.to_dict()}, args={}, data={},
                          train_seconds=133.0, run_id=None)
        session.add(TrainingRun(task="sentiment", status="running", trigger="request", requested_by="admin",
                                created_at=utcnow(), started_at=utcnow(), progress={
                                    "stage": "sentiment", "step": 120, "total": 480, "eta_s": 370.0,
                                    "at": utcnow().isoformat(timespec="seconds")}))
    login(client, "admin")
    html = client.get("/console/").get_data(as_text=True)
    row = html.split('data-version="s9"', 1)[1].split("</tr>", 1)[0]
    assert "kept" in row and "0.6880" in row and "champion 0.7326" in row and "margin +0.0050" in row
    assert reason in row and "2 min 13 s" in row
    assert "running for " in html  # a running run shows how long it has been going, its step and time left
    progress = html.split('class="run-progress', 1)[1].split("</div>", 1)[0]
    assert "step 120 / 480 (25%)" in progress and "about 6 min" in progress and "left" in progress


def test_progress_report_is_throttled_and_estimates_the_time_left() -> None:
    from finetune.progress import PROGRESS_SINK, ProgressReport
    from web.console import run_progress

    sent: list[dict] = []
    token = PROGRESS_SINK.set(sent.append)
    try:
        report = ProgressReport("sentiment", every_s=3600)
        report(0, 100, force=True)
        report(10, 100)  # throttled
        report(50, 100, force=True)
    finally:
        PROGRESS_SINK.reset(token)
    ProgressReport("sentiment")(1, 100, force=True)  # no run: nothing is sent, nothing fails
    assert [(p["step"], p["total"]) for p in sent] == [(0, 100), (50, 100)]
    assert sent[0]["eta_s"] is None and sent[1]["eta_s"] is not None and sent[1]["eta_s"] >= 0

    class Run:
        task, progress = "sentiment", {"stage": "pretrain", "step": 5, "total": 20, "eta_s": 0.2, "at": "bad"}

    from newsdesk.db import utcnow

    assert run_progress(Run(), utcnow()) == "pretrain: step 5 / 20 (25%) · about a moment left"


def test_duration_filter() -> None:
    from web.console import duration

    assert [duration(None), duration(45.2), duration(133), duration(3840)] == ["", "45 s", "2 min 13 s", "1 h 04 min"]


def test_new_silence_form_with_readable_matchers_keeps_input_after_an_error(client: FlaskClient,
                                                                             seeded: dict) -> None:
    login(client, "analyst")
    html = client.get("/dashboard/").get_data(as_text=True)
    assert 'id="silence-form"' in html and "No active silences." in html
    token = page_csrf(client, "/dashboard/")
    rules = client.get("/api/v1/rules", headers=bearer(seeded["tokens"]["analyst"])).get_json()["items"]
    keyword = next(r for r in rules if r["kind"] == "keyword")
    response = client.post("/dashboard/silences", data={"csrf_token": token, "ticker": "", "rule_id": "",
                                                        "hours": "2", "comment": "typed before the error"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "say what to silence" in html
    assert 'value="typed before the error"' in html.split('id="silence-form"', 1)[1].split("</form>", 1)[0]
    response = client.post("/dashboard/silences", data={"csrf_token": token, "ticker": "$xyz",
                                                        "rule_id": str(keyword["id"]), "hours": "8",
                                                        "comment": "earnings call"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert f"Silenced $XYZ · rule “{keyword['name']}” until" in html
    table = html.split('id="silence-table"', 1)[1].split("</table>", 1)[0]
    assert "$XYZ" in table and f"rule “{keyword['name']}”" in table and "rule_id" not in table
    alerts = client.get("/api/v1/alerts?ticker=XYZ", headers=bearer(seeded["tokens"]["analyst"])).get_json()
    assert alerts["items"] and all(a["silence_id"] for a in alerts["items"] if a["state"] == "firing")
    bad = client.post("/dashboard/silences", data={"csrf_token": token, "ticker": "XYZ", "hours": "9999"})
    assert bad.status_code == 422 and "720 hours" in bad.get_data(as_text=True)
