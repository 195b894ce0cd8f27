"""A live server for the browser tests: waitress in a thread on loopback, seeded with real data by the services."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "web"))  # the shared web_support helpers

from newsdesk import db
from newsdesk.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, base_encoder) -> Iterator[dict]:
    """URL, settings and tokens of a running app (its own database, index and model registry)."""
    from waitress import create_server
    from web_support import make_users, seed_catalog, seed_models, seed_stream

    from web import create_app

    home = tmp_path_factory.mktemp("web-live") / "home"
    settings = Settings.load(env={}, home=home, secret_key="browser-secret", device="cpu",
                             finetune={"inference_path": "torch"})
    settings.ensure_dirs()
    db.upgrade(settings.database_url)
    with pytest.MonkeyPatch.context() as mp:
        from web_support import fast_hashing

        fast_hashing(mp)
        tokens = make_users(settings.database_url)
    seed_catalog(settings, base_encoder)
    alerts = seed_stream(settings)
    seed_models(settings)
    app = create_app(settings)
    app.config.update(SSE_POLL_S=0.25, SSE_MAX_S=30)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.effective_port}", "settings": settings, "tokens": tokens,
           "alerts": alerts}
    server.close()
    thread.join(timeout=1)  # a daemon thread: open event streams may keep its loop alive a little longer
    db.get_engine(settings.database_url).dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (/usr/bin/chromium; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.route("https://example.com/**", lambda route: route.abort())  # item links: stay offline
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


PHONE = {"width": 390, "height": 844}  # an iPhone 12-14 screen in CSS pixels
# the outermost elements that stick out past the viewport's right edge (for the failure message)
WIDE_ELEMENTS = """(width) => {
  const out = (e) => e.getBoundingClientRect().right > width + 1;
  return Array.from(document.querySelectorAll('body *')).filter(e => out(e) && !out(e.parentElement)).slice(0, 5)
    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + String(e.className).split(' ').join('.')
         + ' ' + Math.round(e.getBoundingClientRect().right));
}"""


@pytest.fixture
def shot():
    """Saves full-page screenshots of a Playwright page under test-artifacts/: NAME.png at the page's (desktop)
    width and, unless `phone=False`, NAME-phone.png at 390 px, checking that the page fits that width."""

    def _shot(pg, name: str, phone: bool = True) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        if not phone:
            return
        size = pg.viewport_size
        pg.set_viewport_size(PHONE)
        try:
            pg.wait_for_timeout(400)  # plotly's responsive charts redraw at the new width
            pg.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
            overflow = pg.evaluate("document.documentElement.scrollWidth")
            wide = pg.evaluate(WIDE_ELEMENTS, PHONE["width"]) if overflow > PHONE["width"] + 1 else []
            assert overflow <= PHONE["width"] + 1, f"{name}: the page is {overflow} px wide at phone width: {wide}"
        finally:
            pg.set_viewport_size(size)

    return _shot


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


