"""Each role does its job in headless Chromium against a live server; screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import urllib.request

import pytest
from web_support import PASSWORDS

pytestmark = pytest.mark.browser


def sign_in(page, url: str, user: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")


def api(url: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_reader_onboards_sees_the_feed_and_clicks(live_server: dict, page, shot) -> None:

    url = live_server["url"]
    sign_in(page, url, "reader")
    page.wait_for_url("**/feed/onboarding")
    page.check("input[value=tech]")
    page.fill("input[name=tickers]", "AAPL")
    shot(page, "onboarding")
    page.click("#onboarding button[type=submit]")
    page.wait_for_url("**/feed/")
    cards = page.locator("li.item")
    assert cards.count() >= 5
    assert cards.first.get_attribute("data-item-id").startswith("t")  # a tech story leads
    assert page.locator("li.item .reason").first.inner_text()
    shot(page, "feed")
    item_id = cards.nth(1).get_attribute("data-item-id")
    cards.nth(1).locator(".item-title").click()
    page.wait_for_selector(f'li.item.read[data-item-id="{item_id}"]')
    hidden = cards.nth(2).get_attribute("data-item-id")
    cards.nth(2).locator(".not-interested").click()
    page.wait_for_selector(f'li.item[data-item-id="{hidden}"]', state="detached")
    kinds = [(h["item_id"], h["kind"]) for h in api(url, live_server["tokens"]["reader"], "/api/v1/history")["items"]]
    assert kinds[:2] == [(hidden, "not_interested"), (item_id, "click")]
    # the script headline is text, not a script: nothing in the page ran it
    assert page.evaluate("document.querySelectorAll('li.item script').length") == 0


def test_analyst_acknowledges_and_sees_a_live_update(live_server: dict, page, browser, shot) -> None:

    url, alert_id = live_server["url"], live_server["alerts"][0]
    sign_in(page, url, "analyst")
    page.wait_for_url("**/dashboard/")
    page.wait_for_selector("#live-status:text('live')")
    page.wait_for_selector("#sentiment-chart .main-svg .bars")  # plotly drew the chart
    shot(page, "dashboard")
    row_state = page.locator(f'tr[data-alert-id="{alert_id}"] [data-role=state]')
    assert row_state.inner_text() == "firing"
    # A colleague acknowledges in another browser; this page updates without a reload.
    other = browser.new_page()
    sign_in(other, url, "analyst")
    other.goto(f"{url}/dashboard/alerts/{alert_id}")
    shot(other, "alert-detail")
    other.fill("textarea[name=note]", "Checked the filing; desk informed.")
    other.click("#ack-form button[type=submit]")
    other.wait_for_selector("#alert-state:text('acknowledged')")
    assert "Checked the filing" in other.content()
    other.close()
    page.wait_for_selector(f'tr[data-alert-id="{alert_id}"] [data-role=state]:text("acknowledged")', timeout=10_000)
    assert "acknowledged by analyst" in page.locator("#activity").inner_text()
    shot(page, "dashboard-live-update")
    page.goto(f"{url}/dashboard/rules/")
    shot(page, "rules")


def test_alert_table_and_messages_update_live_and_the_rule_form_keeps_input(live_server: dict, page, shot) -> None:
    from datetime import timedelta

    from web_support import KeywordClassifier

    from monitor import service as monitor
    from newsdesk.db import session_scope, utcnow

    url = live_server["url"]
    sign_in(page, url, "analyst")
    page.wait_for_url("**/dashboard/")
    page.wait_for_selector("#live-status:text('live')")
    page.wait_for_selector("#topic-chart .main-svg")  # the per-topic chart is drawn too
    before = int(page.locator("#alert-count").inner_text())
    rows_before = page.locator("#alerts tbody tr[data-alert-id]").count()
    # An ingest elsewhere (the worker, the API): a bankruptcy story about a new ticker fires the keyword rule.
    now = utcnow()
    with session_scope(live_server["settings"].database_url) as session:
        result = monitor.ingest_messages(session, KeywordClassifier(), [
            {"id": "live1", "text": "$ACME files for bankruptcy protection", "ts": now.isoformat() + "Z"},
            {"id": "live2", "text": "$ACME quarterly numbers in line",
             "ts": (now - timedelta(seconds=5)).isoformat() + "Z"}], "live")
    fired = result.alerts_fired[0]
    page.wait_for_selector(f'#alerts tr[data-alert-id="{fired}"]', timeout=10_000)
    assert int(page.locator("#alert-count").inner_text()) == before + 1
    assert page.locator("#alerts tbody tr[data-alert-id]").count() == rows_before + 1
    row = page.locator(f'#alerts tr[data-alert-id="{fired}"]')
    assert "$ACME" in row.inner_text() and row.locator("[data-role=state]").inner_text() == "firing"
    newest = page.locator("#messages tbody tr").first
    page.wait_for_selector('#messages tbody tr:has-text("ACME files for bankruptcy")', timeout=10_000)
    assert "Legal | Regulation" in newest.inner_text()
    assert page.locator("#messages tbody tr").nth(1).inner_text().count("ACME quarterly") == 1  # by message time
    assert page.locator("#messages tbody tr").count() <= 20
    assert page.locator("#activity li .when").first.inner_text().endswith(" UTC")
    shot(page, "dashboard-live-rows")
    # A message stored while no model serves shows "pending"; when a model labels it, the row changes in place.
    with session_scope(live_server["settings"].database_url) as session:
        monitor.ingest_messages(session, None, [{"id": "wait1", "text": "$ACME plunge after the ruling",
                                                 "ts": (now + timedelta(seconds=1)).isoformat() + "Z"}], "live")
    waiting = page.locator('#messages tbody tr:has-text("ACME plunge after the ruling")')
    waiting.wait_for(timeout=10_000)
    assert waiting.locator("[data-role=label]").inner_text() == "pending"
    with session_scope(live_server["settings"].database_url) as session:
        assert monitor.classify_pending(session, KeywordClassifier()) == 1
    page.wait_for_selector('#messages tbody tr:has-text("ACME plunge after the ruling") '
                           '[data-role=label] .badge:text("negative")', timeout=10_000)
    # The rule editor: each kind's parameters are fields, and what was typed stays after an error.
    page.goto(f"{url}/dashboard/rules/")
    form = page.locator("form.rule-form").last
    form.locator("select[name=kind]").select_option("volume_spike")
    assert form.locator('input[name="p.min_ratio"]').is_visible()
    assert not form.locator('input[name="p.min_negative"]').is_visible()
    form.locator("select[name=kind]").select_option("negative_burst")
    form.locator("input[name=name]").fill("Keep what I typed")
    form.locator("input[name=tickers]").fill("ACME")
    form.locator('input[name="p.min_negative"]').fill("6")
    form.locator('input[name="p.min_share"]').fill("7")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-error")
    assert "between" in page.locator(".flash-error").inner_text()
    form = page.locator("form.rule-form").last
    assert form.locator("input[name=name]").input_value() == "Keep what I typed"
    assert form.locator("input[name=tickers]").input_value() == "ACME"
    assert form.locator('input[name="p.min_negative"]').input_value() == "6"
    assert form.locator('input[name="p.min_share"]').input_value() == "7"
    shot(page, "rules-kept-input")


def test_a_multi_rule_burst_is_one_group_tickers_compare_and_a_silence_from_the_form(live_server: dict, page,
                                                                                      shot) -> None:
    from datetime import timedelta

    from web_support import KeywordClassifier

    from monitor import service as monitor
    from newsdesk.db import session_scope, utcnow

    url = live_server["url"]
    now = utcnow()
    burst = [{"id": f"burst{i}", "text": f"$BURST bankruptcy filing details, part {i}",
              "ts": (now - timedelta(minutes=10 - i)).isoformat() + "Z"} for i in range(6)]
    sign_in(page, url, "analyst")
    page.wait_for_url("**/dashboard/")
    page.wait_for_selector("#live-status:text('live')")
    with session_scope(live_server["settings"].database_url) as session:
        result = monitor.ingest_messages(session, KeywordClassifier(), burst, "burst")
    assert len(result.alerts_fired) >= 2  # the keyword rule and the negative burst rule
    group = page.locator('#alert-groups li.group[data-group="BURST"]')
    group.locator("a.chip").nth(len(result.alerts_fired) - 1).wait_for(timeout=10_000)  # live, no reload
    assert group.count() == 1 and group.locator("a.chip").count() == len(result.alerts_fired)
    assert group.locator(".count").inner_text() == f"{len(result.alerts_fired)} alerts"
    page.reload()
    group = page.locator('#alert-groups li.group[data-group="BURST"]')
    assert group.count() == 1  # one group for the ticker, its alerts inside (as the server renders it too)
    assert group.locator("a.chip").count() == len(result.alerts_fired)
    assert {"Negative sentiment burst", "Legal or bankruptcy news"} <= {
        c.split(" ", 1)[1] for c in group.locator("a.chip").all_inner_texts()}
    # several tickers on one chart: one net-sentiment line each
    page.wait_for_selector("#sentiment-chart .main-svg")
    page.locator("#chart-ticker").select_option("BURST")
    page.locator('#chart-compare input[value="XYZ"]').check()
    page.locator("#sentiment-chart .scatterlayer .trace").nth(1).wait_for(state="attached")  # two lines
    assert page.locator("#chart-title").inner_text() == "for $BURST vs $XYZ"
    shot(page, "dashboard-groups-compare")
    # a silence from the form reads as text, not rule_id=3
    form = page.locator("#silence-form")
    form.locator("input[name=ticker]").fill("BURST")
    form.locator("select[name=rule_id]").select_option(label="Negative sentiment burst")
    form.locator("input[name=comment]").fill("known restructuring")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-info:has-text('Silenced $BURST · rule “Negative sentiment burst”')")
    row = page.locator("#silence-table tbody tr").first
    assert "$BURST" in row.inner_text() and "rule “Negative sentiment burst”" in row.inner_text()
    assert "rule_id" not in row.inner_text()


def test_dead_letter_edited_and_replayed_and_another_dismissed(live_server: dict, page, shot) -> None:
    url, tokens = live_server["url"], live_server["tokens"]
    out = api(url, tokens["ingest"], "/api/v1/ingest", [{"id": "dl1", "txt": "$FIXME typo in the field name"},
                                                         {"id": "dl2", "junk": True}, {"id": "dl3", "text": "$OK"}])
    assert len(out["rejected"]) == 2
    sign_in(page, url, "analyst")
    page.wait_for_url("**/dashboard/")
    page.goto(f"{url}/dashboard/dead-letters")
    rows = page.locator("#dead-letters tbody tr[data-dead-letter-id]")
    assert rows.count() >= 2
    fix = page.locator('#dead-letters tbody tr:has-text("FIXME")')
    fix.locator("details.edit summary").click()
    fix.locator("textarea[name=payload]").fill('{"id": "dl1", "text": "$FIXME typo in the field name"}')
    shot(page, "dead-letters")
    fix.locator(".edit-form button[type=submit]").click()
    page.wait_for_selector(".flash-info:has-text('replayed as message')")
    junk = page.locator('#dead-letters tbody tr:has-text("junk")').first
    junk.locator(".dismiss-form input[name=note]").fill("test noise")
    junk.locator(".dismiss-form button[type=submit]").click()
    page.wait_for_selector(".flash-info:has-text('dismissed')")
    page.goto(f"{url}/dashboard/dead-letters?status=all")
    assert page.locator('#dead-letters tr:has-text("FIXME") [data-role=status]').inner_text() == "replayed"
    assert "dismissed: test noise" in page.locator("#dead-letters").inner_text()


def test_admin_promotes_a_model(live_server: dict, page, shot) -> None:

    url = live_server["url"]
    sign_in(page, url, "admin")
    page.wait_for_url("**/console/")
    page.wait_for_selector("#chart-sentiment .main-svg")
    assert page.locator("#task-sentiment .current-version").inner_text() == "s1"
    shot(page, "console")
    page.click('#task-sentiment tr[data-version="s2"] button.promote')
    page.wait_for_selector(".flash-info:text('sentiment s2 is now current.')")
    assert page.locator("#task-sentiment .current-version").inner_text() == "s2"
    page.wait_for_selector("#chart-sentiment .main-svg")
    shot(page, "console-promoted")


def test_console_shows_a_gate_decision_with_its_figures_and_a_running_training(live_server: dict, page,
                                                                               shot) -> None:
    from finetune import gate, registry
    from finetune.tables import TrainingRun
    from newsdesk.db import session_scope, utcnow

    settings = live_server["settings"]
    reason = "kept: macro_f1 0.8190 does not beat current 0.8400 by 0.0050"
    decision = gate.GateDecision(promote=False, task="sentiment", metric="macro_f1", candidate=0.819,
                                 champion=0.84, margin=0.005, reason=reason)
    folder = settings.models_dir / "sentiment" / "s3"
    folder.mkdir(parents=True, exist_ok=True)
    with session_scope(settings.database_url) as session:
        registry.register(session, task="sentiment", version="s3", path=folder,
                          metrics={"macro_f1": 0.819, "gate": decision.to_dict()}, args={}, data={},
                          train_seconds=412.0, run_id=None)
        run = TrainingRun(task="sentiment", status="running", trigger="request", requested_by="admin",
                          created_at=utcnow(), started_at=utcnow(), progress={
                              "stage": "sentiment", "step": 120, "total": 480, "eta_s": 370.0,
                              "at": utcnow().isoformat(timespec="seconds")})
        session.add(run)
        session.flush()
        run_id = run.id
    try:
        sign_in(page, live_server["url"], "admin")
        page.wait_for_url("**/console/")
        row = page.locator('#task-sentiment tr[data-version="s3"]')
        text = row.inner_text()
        assert "kept" in text and "0.8190" in text and "champion 0.8400" in text and "margin +0.0050" in text
        progress = page.locator("#runs .run-progress").first.inner_text()
        assert "step 120 / 480 (25%)" in progress and "left" in progress
        shot(page, "console-gate-and-progress")
    finally:
        with session_scope(settings.database_url) as session:  # the console reloads while a run runs: end it
            session.get(TrainingRun, run_id).status = "succeeded"


def test_a_revoked_token_fails_on_the_next_call_and_a_deactivated_user_cannot_sign_in(live_server: dict, page,
                                                                                       browser, shot) -> None:
    import urllib.error

    url, token = live_server["url"], live_server["tokens"]["reader2"]
    assert "items" in api(url, token, "/api/v1/history")  # works before
    sign_in(page, url, "admin")
    page.wait_for_url("**/console/")
    page.goto(f"{url}/console/users")
    row = page.locator(f'tr[data-token-id]:has(td.mono:text-is("{token[:12]}…"))')
    assert row.count() == 1
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-info:has-text('Revoked token')")
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(url, token, "/api/v1/history")  # the very next call
    assert refused.value.code == 401
    # a new user, then deactivated: the login is refused
    form = page.locator("form.stack:has(input[name=action][value=create])")
    form.locator("input[name=username]").fill("temp-analyst")
    form.locator("input[name=password]").fill("temp-password-1")
    form.locator("select[name=role]").select_option("analyst")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-info:has-text('Created temp-analyst.')")
    page.locator('tr[data-user="temp-analyst"] button[value=deactivate]').click()
    page.wait_for_selector(".flash-info:has-text('temp-analyst deactivated')")
    shot(page, "users")
    other = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    try:
        other.goto(f"{url}/login")
        other.fill("input[name=username]", "temp-analyst")
        other.fill("input[name=password]", "temp-password-1")
        other.click("button[type=submit]")
        other.wait_for_selector(".flash-error:has-text('Wrong username or password.')")
        assert other.url.endswith("/login") or "/login" in other.url
        shot(other, "login-refused")
    finally:
        other.context.close()


def test_reader_cannot_open_the_dashboard(live_server: dict, page, shot) -> None:
    url = live_server["url"]
    sign_in(page, url, "reader2")
    response = page.goto(f"{url}/dashboard/")
    assert response.status == 403
    response = page.goto(f"{url}/console/")
    assert response.status == 403
