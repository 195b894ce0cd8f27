"""Fixtures for the web tests: an app on a fresh migrated SQLite database, users with API tokens."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import fast_hashing, make_users

from newsdesk import db
from newsdesk.settings import Settings
from web import create_app


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head per test run; each test gets a copy (migrating costs ~2 s)."""
    path = tmp_path_factory.mktemp("web-template") / "newsdesk.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    db.get_engine(url).dispose()
    return path


@pytest.fixture
def db_url(settings: Settings, migrated_template: Path) -> Iterator[str]:
    """Overrides the core fixture: a copy of the migrated template instead of a fresh migration."""
    target = Path(settings.database_url.split("///", 1)[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_template, target)
    yield settings.database_url
    db.get_engine(settings.database_url).dispose()


@pytest.fixture
def app(settings: Settings, db_url: str) -> Flask:
    app = create_app(settings, testing=True)
    app.config.update(SSE_POLL_S=0.05, SSE_MAX_S=0.6)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def tokens(db_url: str) -> dict[str, str]:
    """Users reader, reader2, analyst, admin (passwords in PASSWORDS), a user token each and an ingest token."""
    return make_users(db_url)




@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same code path, cheaper hash parameters (scrypt's default costs ~0.2 s per hash on these CPUs)."""
    fast_hashing(monkeypatch)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path, base_encoder) -> dict:
    """Seeded once per run: users and tokens, catalog + FAISS index (recsys), stream + alert (monitor),
    two registered sentiment versions (finetune); each test gets a copy of the home folder."""
    from web_support import seed_catalog, seed_models, seed_stream

    home = tmp_path_factory.mktemp("web-seeded") / "home"
    settings = Settings.load(env={}, home=home, secret_key="test-secret", device="cpu",
                             finetune={"inference_path": "torch"})
    settings.ensure_dirs()
    shutil.copyfile(migrated_template, home / "newsdesk.db")
    with pytest.MonkeyPatch.context() as mp:
        fast_hashing(mp)
        tokens = make_users(settings.database_url)
    seed_catalog(settings, base_encoder)
    alerts = seed_stream(settings)
    seed_models(settings)
    db.get_engine(settings.database_url).dispose()
    return {"home": home, "tokens": tokens, "alerts": alerts}


@pytest.fixture
def seeded(settings: Settings, db_url: str, seeded_template: dict) -> dict:
    """A copy of the seeded home (database, index, models) in this test's home."""
    db.get_engine(db_url).dispose()
    for child in seeded_template["home"].iterdir():
        if child.name == "secret_key":
            continue
        target = settings.home / child.name
        if child.is_dir():
            shutil.copytree(child, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(child, target)
    return {"alerts": seeded_template["alerts"], "tokens": seeded_template["tokens"]}
