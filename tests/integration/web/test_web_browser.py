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
    # The rule editor keeps what was typed when one value is wrong.
    page.goto(f"{url}/dashboard/rules/")
    form = page.locator("form.rule-form").last
    form.locator("input[name=name]").fill("Keep what I typed")
    form.locator("input[name=tickers]").fill("ACME")
    form.locator("input[name=params]").fill('{"min_share": 7}')
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".flash-error")
    form = page.locator("form.rule-form").last
    assert form.locator("input[name=name]").input_value() == "Keep what I typed"
    assert form.locator("input[name=tickers]").input_value() == "ACME"
    assert form.locator("input[name=params]").input_value() == '{"min_share": 7}'
    shot(page, "rules-kept-input")


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
    page.goto(f"{url}/console/users")
    shot(page, "users")


def test_reader_cannot_open_the_dashboard(live_server: dict, page, shot) -> None:
    url = live_server["url"]
    sign_in(page, url, "reader2")
    response = page.goto(f"{url}/dashboard/")
    assert response.status == 403
    response = page.goto(f"{url}/console/")
    assert response.status == 403
