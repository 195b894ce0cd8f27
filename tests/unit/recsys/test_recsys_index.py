"""ItemIndex contract for both backends: add/update/remove, search, persistence, GPU fallback, catalog sync."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from newsdesk.errors import InvalidInput, Unavailable
from recsys import index as index_module
from recsys.index import INDEX_FILE, ItemIndex
from recsys.recommender import ensure_index


def _data(n: int = 50, dim: int = 8, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"i{j}" for j in range(n)], rng.normal(size=(n, dim)).astype(np.float32)


@pytest.fixture(params=["flat", "hnsw"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_search_finds_each_item_first(kind: str) -> None:
    ids, vecs = _data()
    index = ItemIndex(8, kind)
    index.add(ids, vecs)
    scores, found = index.search(vecs / np.linalg.norm(vecs, axis=1, keepdims=True), 3)
    assert [row[0] for row in found] == ids
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)  # normalised vectors: inner product = cosine


def test_update_replaces_and_remove_drops_without_rebuild(kind: str) -> None:
    ids, vecs = _data()
    index = ItemIndex(8, kind)
    index.add(ids, vecs)
    index.add(["i1"], vecs[2:3])  # i1 now points where i2 is
    assert len(index) == 50
    assert set(index.search(vecs[2], 2)[1][0]) == {"i1", "i2"}
    assert index.search(vecs[1], 1)[1][0] != ["i1"]
    assert index.remove(["i2", "unknown"]) == 1
    assert len(index) == 49 and "i2" not in index
    assert index.search(vecs[2], 1)[1][0] == ["i1"]
    assert all("i2" not in row for row in index.search(vecs, 49)[1])


def test_persistence_round_trip(kind: str, tmp_path: Path) -> None:
    ids, vecs = _data()
    index = ItemIndex(8, kind)
    index.add(ids, vecs)
    index.remove(["i7"])
    manifest = index.save(tmp_path / "v1", "v1", "fp")
    assert manifest.item_count == 49 and manifest.kind == kind
    loaded, again = ItemIndex.load(tmp_path / "v1")
    assert again.catalog_fingerprint == "fp" and len(loaded) == 49 and "i7" not in loaded
    assert loaded.search(vecs[:5], 3)[1] == index.search(vecs[:5], 3)[1]


def test_corrupt_index_file_is_detected(tmp_path: Path) -> None:
    ids, vecs = _data()
    index = ItemIndex.build(ids, vecs)
    index.save(tmp_path, "v1", "fp")
    (tmp_path / INDEX_FILE).write_bytes(b"garbage")
    with pytest.raises(Unavailable):
        ItemIndex.load(tmp_path)


def test_build_picks_hnsw_above_threshold() -> None:
    ids, vecs = _data()
    assert ItemIndex.build(ids, vecs, approx_threshold=100).kind == "flat"
    assert ItemIndex.build(ids, vecs, approx_threshold=10).kind == "hnsw"


def test_bad_arguments_raise() -> None:
    index = ItemIndex(8)
    with pytest.raises(InvalidInput):
        index.add(["a"], np.zeros((1, 4)))
    with pytest.raises(InvalidInput):
        index.search(np.zeros((1, 4)), 1)
    with pytest.raises(InvalidInput):
        ItemIndex(8, "ivf")
    assert index.search(np.zeros((1, 8)), 3)[1] == [[]]


def test_gpu_failure_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    def broken(*_: object) -> None:
        raise RuntimeError("CUDA error: no device")

    monkeypatch.setattr(index_module, "faiss_gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken, raising=False)
    ids, vecs = _data()
    index = ItemIndex.build(ids, vecs, use_gpu=True)
    assert index.search(vecs[3], 1)[1] == [["i3"]]
    assert index.backend == "cpu"


def test_gpu_copy_is_used_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    copies = []

    def fake_to_gpu(_res: object, _dev: int, cpu: object) -> object:
        copies.append(cpu)
        return cpu  # stands in for the GPU index: same search interface

    monkeypatch.setattr(index_module, "faiss_gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_to_gpu, raising=False)
    ids, vecs = _data()
    index = ItemIndex.build(ids, vecs, use_gpu=True)
    index.search(vecs[0], 1)
    index.search(vecs[0], 1)
    assert index.backend == "gpu" and len(copies) == 1
    index.remove(["i0"])  # a change refreshes the GPU copy on the next search
    assert index.search(vecs[0], 1)[1] != [["i0"]] and len(copies) == 2


def test_ensure_index_syncs_changes_incrementally(settings) -> None:
    ids, vecs = _data(20)
    hashes = {i: "h" for i in ids}
    _, manifest = ensure_index(settings, "base", ids, vecs, hashes)
    assert manifest.item_count == 20
    _, same = ensure_index(settings, "base", ids, vecs, hashes)
    assert same.created_at == manifest.created_at  # matched the catalog: loaded, not rewritten
    vecs2 = vecs.copy()
    vecs2[0] = vecs[5]
    new_ids, new_vecs = ids[:-1] + ["new"], np.vstack([vecs2[:-1], vecs[7:8]])
    hashes2 = {**{i: "h" for i in new_ids}, "i0": "changed"}
    synced, m2 = ensure_index(settings, "base", new_ids, new_vecs, hashes2)
    assert m2.item_count == 20 and "i19" not in synced and "new" in synced
    assert set(synced.search(vecs[5], 2)[1][0]) == {"i0", "i5"}


def test_interrupted_publish_leaves_the_published_index_whole(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill in the save window (here: between the ids file and the manifest) leaves the published index as it
    was, `index status` right, and the staging folder is removed."""
    from recsys.index import MANIFEST_FILE, read_manifest

    ids, vecs = _data(20)
    ensure_index(settings, "base", ids, vecs, {i: "h" for i in ids})
    folder = settings.indexes_dir / "base"
    more_ids, more_vecs = ids + ["extra"], np.vstack([vecs, vecs[:1]])
    real_write = index_module.atomic_write_bytes

    def killed_before_manifest(path, data) -> None:
        if path.name == MANIFEST_FILE:
            raise KeyboardInterrupt  # stands in for the kill
        real_write(path, data)

    monkeypatch.setattr(index_module, "atomic_write_bytes", killed_before_manifest)
    with pytest.raises(KeyboardInterrupt):
        ensure_index(settings, "base", more_ids, more_vecs, {i: "h" for i in more_ids}, force=True)
    monkeypatch.undo()
    loaded, manifest = ItemIndex.load(folder)  # checksums hold: nothing half new
    assert len(loaded) == 20 and manifest.item_count == 20 and "extra" not in loaded
    assert read_manifest(folder).item_count == 20
    assert not list(settings.indexes_dir.glob(".staging-*"))


def test_publish_removes_what_a_killed_writer_left(settings) -> None:
    import subprocess

    ids, vecs = _data(10)
    ensure_index(settings, "base", ids, vecs, {i: "h" for i in ids})
    writer = subprocess.Popen(["true"])  # a writer process that is gone (exited and reaped)
    writer.wait()
    pid = writer.pid
    leftover = settings.indexes_dir / f".staging-{pid}-1-base.tmp"
    leftover.mkdir()
    (leftover / "index.faiss").write_bytes(b"half")
    ensure_index(settings, "base", ids[:5], vecs[:5], {i: "h" for i in ids[:5]})
    assert not leftover.exists()
    gens = list(settings.indexes_dir.glob(".base.gen-*"))
    assert len(gens) == 2 and (settings.indexes_dir / "base").resolve() in gens


def test_another_machines_staging_in_a_shared_store_waits_for_its_age(settings) -> None:
    import os

    from recsys.index import HOST_TAG, remove_leftovers

    ids, vecs = _data(10)
    ensure_index(settings, "base", ids, vecs, {i: "h" for i in ids})
    other = "h" + ("0" if HOST_TAG[1] != "0" else "1") * 8
    live = settings.indexes_dir / f".staging-{os.getpid() + 100000}-1-{other}-base.tmp"  # its pid means nothing here
    live.mkdir()
    assert remove_leftovers(settings.indexes_dir) == 0 and live.exists()  # maybe still writing on its machine
    old = live.stat().st_mtime - 7200
    os.utime(live, (old, old))
    assert remove_leftovers(settings.indexes_dir) == 1 and not live.exists()


def test_two_homes_on_one_store_serve_one_published_index(tmp_path) -> None:
    from newsdesk.settings import Settings

    store = tmp_path / "store"
    a, b = (Settings.load(env={"NEWSDESK_MODEL_STORE": str(store)}, home=tmp_path / name, secret_key="s")
            for name in ("a", "b"))
    ids, vecs = _data(12)
    ensure_index(a, "base", ids, vecs, {i: "h" for i in ids})  # the worker job on machine A
    assert a.indexes_dir == b.indexes_dir == store / "indexes"
    served, manifest = ensure_index(b, "base", ids, vecs, {i: "h" for i in ids}, publish=False)
    assert manifest.checksums and len(served) == 12  # B loaded A's published index (not an in-memory rebuild)
    assert not (b.home / "indexes").exists()


def test_request_path_serves_a_stale_index_without_writing(settings) -> None:
    ids, vecs = _data(20)
    ensure_index(settings, "base", ids, vecs, {i: "h" for i in ids})
    before = sorted(p.name for p in settings.indexes_dir.iterdir())
    stamp = (settings.indexes_dir / "base" / "manifest.json").stat().st_mtime_ns
    fewer = ids[:15]  # a catalog change the worker job has not published yet
    served, manifest = ensure_index(settings, "base", fewer, vecs[:15], {i: "h" for i in fewer}, publish=False)
    assert len(served) == 20 and manifest.item_count == 20  # the old index, whole
    assert sorted(p.name for p in settings.indexes_dir.iterdir()) == before
    assert (settings.indexes_dir / "base" / "manifest.json").stat().st_mtime_ns == stamp
