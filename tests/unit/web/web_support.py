"""Helpers for the web tests: users, login with CSRF, and seeding real data through the services."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from newsdesk import db
from newsdesk.db import utcnow
from newsdesk.settings import Settings
from web.users import create_token, create_user

PASSWORDS = {"reader": "reader-pass", "reader2": "reader2-pass", "analyst": "analyst-pass", "admin": "admin-pass"}
ROLES = {"reader": "reader", "reader2": "reader", "analyst": "analyst", "admin": "admin"}
XSS = "<script>alert('xss')</script>"

CATALOG = [
    ("m1", "Stocks rally as central bank holds rates", "Equities rose across the board.", "markets", "rates"),
    ("m2", "Bond yields slip after inflation report", "Treasuries gained.", "markets", "rates"),
    ("m3", "Oil prices jump on supply worries", "Brent crude climbed.", "markets", "energy"),
    ("m4", f"Quarterly earnings beat {XSS}", "Profit topped estimates.", "markets", "earnings"),
    ("t1", "New laptop chips promise longer battery life", "A faster processor.", "tech", "hardware"),
    ("t2", "Startup releases open source database", "Developers cheer.", "tech", "software"),
    ("t3", "Smartphone sales slow in third quarter", "Shipments fell.", "tech", "hardware"),
    ("s1", "Home team wins the championship final", "A late goal decided it.", "sports", "football"),
    ("s2", "Tennis star withdraws from the open", "An injury.", "sports", "tennis"),
    ("s3", "Marathon record falls in Berlin", "A new best time.", "sports", "running"),
]


@dataclass
class FakePrediction:
    label: str
    scores: dict[str, float]


class KeywordClassifier:
    """A deterministic stand-in for a trained sentiment model (seeding only): 'plunge/bankruptcy' -> negative."""

    version = "test-keywords"
    tasks = ("sentiment", "topic")

    def predict_tasks(self, texts: Sequence[str], batch_size: int = 64) -> list[dict[str, FakePrediction]]:
        """Sentiment by keyword, topic "Legal | Regulation" for court/lawsuit news, else "Earnings"."""
        out = []
        for text, sentiment in zip(texts, self.predict(texts, batch_size), strict=True):
            legal = any(w in text.lower() for w in ("court", "lawsuit", "bankrupt"))
            topic = "Legal | Regulation" if legal else "Earnings"
            other = "Earnings" if legal else "Legal | Regulation"
            out.append({"sentiment": sentiment, "topic": FakePrediction(topic, {topic: 0.8, other: 0.2})})
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[FakePrediction]:
        out = []
        for text in texts:
            low = text.lower()
            label = "negative" if ("bankrupt" in low or "plunge" in low) else \
                "positive" if "soar" in low else "neutral"
            scores = {k: (0.9 if k == label else 0.05) for k in ("negative", "neutral", "positive")}
            out.append(FakePrediction(label, scores))
        return out


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str | None = None) -> Any:
    page = client.get("/login")
    token = csrf_from(page.get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf_token": token})


def page_csrf(client: FlaskClient, path: str) -> str:
    return csrf_from(client.get(path, follow_redirects=True).get_data(as_text=True))


def write_catalog(folder: Path) -> Path:
    path = folder / "catalog.csv"
    now = utcnow()
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "description", "category", "tags", "url", "published_at"])
        for n, (item_id, title, desc, cat, tags) in enumerate(CATALOG):
            writer.writerow([item_id, title, desc, cat, tags, f"https://example.com/{item_id}",
                             (now - timedelta(hours=n)).replace(microsecond=0).isoformat() + "Z"])
    return path


def seed_catalog(settings: Settings, encoder: Any) -> None:
    """The catalog through recsys.service.import_catalog, then a real FAISS index built with `encoder`."""
    from recsys import service as recsys

    with db.session_scope(settings.database_url) as session:
        report = recsys.import_catalog(session, [write_catalog(settings.home)])
        assert report.imported == len(CATALOG), report
    with db.session_scope(settings.database_url) as session:
        recsys.rebuild_index(session, settings, encoder=encoder)


def seed_stream(settings: Settings) -> list[int]:
    """Default rules, then messages through monitor.service.ingest_messages; one bankruptcy story fires an alert."""
    from monitor import service as monitor

    now = utcnow()
    payloads = [{"id": f"n{i}", "text": f"$XYZ holds its annual meeting, item {i}",
                 "ts": (now - timedelta(minutes=90 - i)).isoformat() + "Z"} for i in range(6)]
    payloads.append({"id": "x1", "text": f"$XYZ files for bankruptcy protection {XSS}",
                     "ts": (now - timedelta(minutes=5)).isoformat() + "Z"})
    with db.session_scope(settings.database_url) as session:
        monitor.ensure_default_rules(session)
        result = monitor.ingest_messages(session, KeywordClassifier(), payloads, "test")
    assert result.alerts_fired, result
    return result.alerts_fired


def seed_models(settings: Settings) -> None:
    """Two registered sentiment versions (tiny folders), v1 current, for the console."""
    from finetune import registry

    with db.session_scope(settings.database_url) as session:
        for n, f1 in ((1, 0.81), (2, 0.84)):
            folder = settings.models_dir / "sentiment" / f"s{n}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text("{}")
            registry.register(session, task="sentiment", version=f"s{n}", path=folder,
                              metrics={"macro_f1": f1, "accuracy": f1 + 0.02}, args={}, data={},
                              train_seconds=30.0 * n, run_id=None)
        registry.set_current(session, "sentiment", "s1", actor="test")


def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same code path, cheaper hash parameters (scrypt's default costs ~0.2 s per hash on these CPUs)."""
    import functools

    import werkzeug.security

    import web.users

    fast = functools.partial(werkzeug.security.generate_password_hash, method="pbkdf2:sha256:1000")
    monkeypatch.setattr(web.users, "generate_password_hash", fast)
    monkeypatch.setattr(web.users, "_DUMMY_HASH", fast("not-a-password"))


def make_users(url: str) -> dict[str, str]:
    """Users reader, reader2, analyst, admin; a user token each and an ingest token (for analyst)."""
    out = {}
    with db.session_scope(url) as session:
        for name, role in ROLES.items():
            create_user(session, name, PASSWORDS[name], role)
        for name in ROLES:
            out[name] = create_token(session, name)
        out["ingest"] = create_token(session, "analyst", "ingest")
    return out
