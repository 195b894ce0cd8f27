from __future__ import annotations

from pathlib import Path

import pytest

from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings


def test_defaults_put_sqlite_in_home(tmp_path: Path) -> None:
    s = Settings.load(env={}, home=tmp_path)
    assert s.home == tmp_path.resolve()
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'newsdesk.db'}"
    assert s.device == "auto"
    assert len(s.secret_key) == 64
    # the generated secret persists across loads
    assert Settings.load(env={}, home=tmp_path).secret_key == s.secret_key


def test_env_overrides_toml_and_nested_groups(tmp_path: Path) -> None:
    config = tmp_path / "newsdesk.toml"
    config.write_text('device = "cuda"\n[recsys]\nmmr_lambda = 0.5\n[monitor]\nwebhook_urls = ["http://a"]\n')
    env = {"NEWSDESK_CONFIG": str(config), "NEWSDESK_HOME": str(tmp_path), "NEWSDESK_DEVICE": "cpu",
           "NEWSDESK_RECSYS__CANDIDATES": "50"}
    s = Settings.load(env=env)
    assert s.device == "cpu"
    assert s.recsys.mmr_lambda == 0.5
    assert s.recsys.candidates == 50
    assert s.monitor.webhook_urls == ("http://a",)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"NEWSDESK_DEVICE": "tpu"}, "device"),
        ({"NEWSDESK_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"NEWSDESK_REDIS_URL": "http://x"}, "redis_url"),
        ({"NEWSDESK_NOPE": "1"}, "nope"),
        ({"NEWSDESK_RECSYS__CANDIDATES": "many"}, "recsys.candidates"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, env: dict[str, str], key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Settings.load(env={"NEWSDESK_HOME": str(tmp_path), **env})
    assert info.value.details["key"] == key


def test_unreadable_config_is_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(InvalidInput, match="cannot read config"):
        Settings.load(env={"NEWSDESK_CONFIG": str(bad), "NEWSDESK_HOME": str(tmp_path)})
