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
