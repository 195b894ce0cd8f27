"""The service gateway: a package not built yet (or a function it lacks) answers 503 "not available yet"."""

from __future__ import annotations

import importlib
import types

import pytest

from newsdesk.errors import Unavailable
from newsdesk.settings import Settings
from web.services import Services


def test_missing_package_is_unavailable(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake_import(name: str, *args, **kwargs):
        if name == "recsys.service":
            raise ModuleNotFoundError("No module named 'recsys'", name="recsys")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    services = Services(settings)
    assert not services.available("recsys") and services.available("monitor")
    with pytest.raises(Unavailable, match="recsys is not available yet"):
        services.recsys.recommend_for_user(None, settings, "u")


def test_missing_function_is_unavailable_and_overrides_win(settings: Settings) -> None:
    stand_in = types.SimpleNamespace(list_topics=lambda session: ["a"])
    services = Services(settings, {"recsys": stand_in})
    assert services.recsys.list_topics(None) == ["a"]
    with pytest.raises(Unavailable, match="recsys.service.user_history is not available yet"):
        services.recsys.user_history(None, "u")


def test_no_sentiment_model_means_no_classifier(settings: Settings, db_url: str) -> None:
    assert Services(settings).classifier() is None
