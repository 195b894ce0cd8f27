"""The shared model store: two NEWSDESK_HOMEs on one database and one store (SQLite, and PostgreSQL when set)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from finetune import registry, service, store
from finetune.pipeline import Prepared, finish
from newsdesk import db
from newsdesk.cli import cli
from newsdesk.db import session_scope
from newsdesk.errors import Conflict, InvalidInput, NotFound, Unavailable
from newsdesk.settings import Settings


def two_homes(tmp_path: Path, database_url: str = "") -> tuple[Settings, Settings]:
    """Homes A and B on one database and one store (B sees the store through another path, like another mount)."""
    shared = tmp_path / "nfs" / "store"
    shared.mkdir(parents=True)
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "models").symlink_to(shared)
    url = database_url or f"sqlite:///{tmp_path / 'shared.db'}"
    a = Settings.load(env={"NEWSDESK_MODEL_STORE": str(shared)}, home=tmp_path / "a", database_url=url,
                      secret_key="s", device="cpu")
    b = Settings.load(env={"NEWSDESK_MODEL_STORE": f"file://{tmp_path / 'mnt' / 'models'}"}, home=tmp_path / "b",
                      database_url=url, secret_key="s", device="cpu")
    for s in (a, b):
        s.ensure_dirs()
    db.upgrade(url)
    return a, b


def stage(settings: Settings, task: str, version: str, payload: bytes = b"weights") -> Path:
    staged = registry.staging_dir(settings, task, version)
    staged.mkdir()
    (staged / "weights.bin").write_bytes(payload)
    (staged / "sub").mkdir()
    (staged / "sub" / "vocab.txt").write_text("a b c")
    return staged


def finish_on(settings: Settings, version: str, value: float, promote: str = "auto"):
    with session_scope(settings.database_url) as session:
        current = registry.current_row(session, "sentiment")
        prepared = Prepared(stage(settings, "sentiment", version, version.encode()), {"macro_f1": value},
                            current.primary_value if current else None, "", {}, 3, 1.0, {})
        return finish(session, settings, "sentiment", version, 1, prepared, {}, promote, "test")


def test_settings_name_the_store_and_refuse_object_urls(tmp_path: Path) -> None:
    plain = Settings.load(env={}, home=tmp_path / "h", secret_key="s")
    assert plain.model_store_dir == plain.models_dir and not plain.shared_model_store
    assert plain.indexes_dir == plain.home / "indexes"
    shared = Settings.load(env={"NEWSDESK_MODEL_STORE": f"file://{tmp_path}/store"}, home=tmp_path / "h",
                           secret_key="s")
    assert shared.model_store_dir == tmp_path / "store" and shared.shared_model_store
    assert shared.indexes_dir == tmp_path / "store" / "indexes" and shared.models_dir == shared.home / "models"
    same = Settings.load(env={"NEWSDESK_MODEL_STORE": str(tmp_path / "h" / "models")}, home=tmp_path / "h",
                         secret_key="s")
    assert not same.shared_model_store
    with pytest.raises(InvalidInput, match="NEWSDESK_MODEL_STORE"):
        Settings.load(env={"NEWSDESK_MODEL_STORE": "s3://bucket/models"}, home=tmp_path / "h", secret_key="s")


def _check_two_homes(a: Settings, b: Settings) -> None:
    outcome = finish_on(a, "v1", 0.8)
    assert outcome.promoted and outcome.path == a.model_store_dir / "sentiment" / "v1"
    published = a.model_store_dir / "sentiment" / "v1"
    record = json.loads((published / store.STORE_FILE).read_text())
    assert {"weights.bin": 2, "sub/vocab.txt": 5, "args.json": 2}.items() <= record["files"].items()
    assert (a.models_dir / "sentiment" / "v1" / "weights.bin").read_bytes() == b"v1"  # A's cache: the staged copy
    assert not list((a.models_dir / "sentiment").glob(".staging-*"))
    assert not list(published.parent.glob(".incoming-*"))

    with session_scope(b.database_url) as session:  # B: what A promoted, loaded from B's own cache
        row = registry.current_row(session, "sentiment")
        folder = registry.model_folder(b, row)
    assert row.version == "v1" and folder == b.models_dir / "sentiment" / "v1"
    assert (folder / "weights.bin").read_bytes() == b"v1" and (folder / "sub" / "vocab.txt").is_file()

    finish_on(b, "v2", 0.5)  # trained on B, kept by the gate; promoted by hand from A
    with session_scope(a.database_url) as session:
        assert service.promote(session, a, "sentiment", "v2", actor="ops").is_current
    with session_scope(b.database_url) as session:
        assert registry.model_folder(b, registry.current_row(session, "sentiment")).name == "v2"
    with session_scope(a.database_url) as session:  # A fetches B's version, then rolls back to its own
        assert (registry.model_folder(a, registry.current_row(session, "sentiment")) / "weights.bin").read_bytes() \
            == b"v2"
        assert service.rollback(session, a, "sentiment").version == "v1"
    runner = CliRunner()
    for settings in (a, b):
        env = {"NEWSDESK_HOME": str(settings.home), "NEWSDESK_DATABASE_URL": settings.database_url,
               "NEWSDESK_MODEL_STORE": settings.model_store}
        result = runner.invoke(cli, ["models", "list", "--json"], env=env)
        assert result.exit_code == 0, result.output
        rows = {(r["version"], r["status"]) for r in map(json.loads, result.output.splitlines())}
        assert rows == {("v1", "current"), ("v2", "rolled_back")}


def test_a_version_published_from_home_a_is_served_from_home_b(tmp_path: Path) -> None:
    _check_two_homes(*two_homes(tmp_path))


@pytest.mark.postgres
def test_a_version_published_from_home_a_is_served_from_home_b_on_postgres(tmp_path: Path, pg_url: str) -> None:
    _check_two_homes(*two_homes(tmp_path, pg_url))


def test_publishing_a_name_twice_is_a_conflict_and_leaves_the_first(tmp_path: Path) -> None:
    a, b = two_homes(tmp_path)
    registry.publish(stage(a, "sentiment", "v1", b"first"), a, "sentiment", "v1", {})
    with pytest.raises(Conflict):
        registry.publish(stage(b, "sentiment", "v1", b"second"), b, "sentiment", "v1", {})
    assert (a.model_store_dir / "sentiment" / "v1" / "weights.bin").read_bytes() == b"first"


def test_a_torn_or_changed_store_copy_is_never_served(tmp_path: Path) -> None:
    a, b = two_homes(tmp_path)
    final = registry.publish(stage(a, "sentiment", "v1", b"full"), a, "sentiment", "v1", {})
    (final / "weights.bin").write_bytes(b"")  # the store's copy lost bytes (a torn write by hand, a bad disk)
    with pytest.raises(Unavailable, match="incomplete"):
        store.local_folder(b, final)
    assert not (b.models_dir / "sentiment" / "v1").exists()
    assert not list((b.models_dir / "sentiment").glob(".fetch-*"))


def test_the_cache_serves_when_the_store_is_gone_and_refetches_a_replaced_copy(tmp_path: Path) -> None:
    a, b = two_homes(tmp_path)
    final = registry.publish(stage(a, "sentiment", "v1"), a, "sentiment", "v1", {})
    cached = store.local_folder(b, final)
    moved = final.parent.parent.with_name("store-offline")
    final.parent.parent.rename(moved)  # the mount went away
    assert store.local_folder(b, final) == cached and (cached / "weights.bin").is_file()
    moved.rename(final.parent.parent)
    shutil.rmtree(final)  # republished under the same name (a reset database): B must not keep the old bytes
    registry.publish(stage(a, "sentiment", "v1", b"other"), a, "sentiment", "v1", {})
    assert (store.local_folder(b, final) / "weights.bin").read_bytes() == b"other"
    shutil.rmtree(final)
    shutil.rmtree(cached)
    with pytest.raises(Unavailable, match="not in the model store"):
        store.local_folder(b, final)


def test_promoting_a_version_missing_from_the_store_is_refused(tmp_path: Path) -> None:
    a, b = two_homes(tmp_path)
    finish_on(a, "v1", 0.8)
    finish_on(a, "v2", 0.1)
    shutil.rmtree(a.model_store_dir / "sentiment" / "v2")
    with session_scope(b.database_url) as session, pytest.raises(NotFound, match="missing"):
        service.promote(session, b, "sentiment", "v2")


def test_without_a_store_versions_stay_in_the_home(settings: Settings, db_url: str) -> None:
    outcome = finish_on(settings, "v1", 0.8)
    assert outcome.path == settings.models_dir / "sentiment" / "v1"
    assert not (outcome.path / store.STORE_FILE).exists()
    with session_scope(db_url) as session:
        assert registry.model_folder(settings, registry.current_row(session, "sentiment")) == outcome.path


def test_the_serving_path_of_a_store_version_is_read_from_this_homes_cache(tmp_path: Path) -> None:
    from finetune.inference import PathCheck, Selection, cache_dir, write_selection
    from newsdesk.settings import FinetuneSettings

    a, b = two_homes(tmp_path)
    finish_on(a, "v1", 0.8)
    for settings, chosen in ((a, "onnx-float32"), (b, "onnx-int8-pc")):  # each home's processes chose at load
        auto = settings.replace(finetune=FinetuneSettings(inference_path="auto"))
        with session_scope(settings.database_url) as session:
            folder = registry.model_folder(settings, registry.current_row(session, "sentiment"))
            assert folder == settings.models_dir / "sentiment" / "v1"  # what a serving process loads
            assert service.serving_path(session, auto, "sentiment") == ""  # not loaded here yet
            write_selection(cache_dir(settings.home, folder),
                            Selection(chosen, [PathCheck(chosen, True, "ok", 1.0)], {}))
            assert service.serving_path(session, auto, "sentiment") == chosen
