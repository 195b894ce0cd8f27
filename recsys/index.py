"""`ItemIndex`: an id-mapped FAISS inner-product index (flat or HNSW), optional GPU copy, atomic save and load.

Published indexes are switched as a whole: `indexes/<version>` is a symbolic link to one complete generation
folder (`indexes/.<version>.gen-<stamp>`). `publish` writes a new generation in a staging folder, renames it, then
replaces the link in one `rename`, so a reader (or `index status`) sees the old index or the new one, never a mix,
whatever kills the writer; staging folders left by a dead writer and superseded generations are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from newsdesk.db import utcnow
from newsdesk.device import faiss_gpu_available
from newsdesk.errors import InvalidInput, Unavailable
from newsdesk.files import fsync_dir

log = logging.getLogger(__name__)

INDEX_FILE, IDS_FILE, MANIFEST_FILE = "index.faiss", "ids.json", "manifest.json"
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@dataclass
class Manifest:
    """What a saved index holds; `checksums` let a load detect a torn or foreign write."""

    model_version: str
    item_count: int
    dim: int
    kind: str
    catalog_fingerprint: str
    checksums: dict[str, str]
    created_at: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy (zero rows stay zero)."""
    out = np.array(vectors, dtype=np.float32, copy=True, order="C")
    if out.ndim != 2:
        raise InvalidInput(f"vectors must be a 2-d array, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


class ItemIndex:
    """FAISS `IndexIDMap2` over inner product on normalised vectors, keyed by string item ids.

    Flat indexes remove and replace vectors in place; HNSW cannot remove graph nodes, so removed ids become
    tombstones (filtered at search, dropped at the next rebuild). With `use_gpu` and FAISS-GPU present, searches run
    on a GPU copy refreshed after changes; any GPU failure falls back to the CPU index.
    """

    def __init__(self, dim: int, kind: str = "flat", use_gpu: bool = False) -> None:
        import faiss

        if kind not in ("flat", "hnsw"):
            raise InvalidInput(f"index kind must be 'flat' or 'hnsw', got {kind!r}")
        if dim <= 0:
            raise InvalidInput(f"index dimension must be positive, got {dim}")
        self.dim, self.kind = dim, kind
        if kind == "flat":
            inner = faiss.IndexFlatIP(dim)
        else:
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
        self._cpu = faiss.IndexIDMap2(inner)
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._tombstones = 0
        self._next = 0
        self.hashes: dict[str, str] = {}  # item id -> text hash of the vector indexed (for incremental sync)
        self._want_gpu = use_gpu
        self._gpu = None
        self._gpu_stale = True
        self.backend = "cpu"

    @classmethod
    def build(cls, item_ids: Sequence[str], vectors: np.ndarray, *, approx_threshold: int = 50_000,
              use_gpu: bool = False) -> ItemIndex:
        """A flat index, or HNSW when there are more than `approx_threshold` items."""
        kind = "hnsw" if len(item_ids) > approx_threshold else "flat"
        index = cls(int(np.asarray(vectors).shape[1]) if len(item_ids) else 384, kind=kind, use_gpu=use_gpu)
        index.add(item_ids, vectors)
        return index

    # Changes -------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._label_of

    @property
    def item_ids(self) -> list[str]:
        return list(self._label_of)

    def add(self, item_ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add items; ids already present are replaced (update without a rebuild).

        Raises:
            InvalidInput: shapes disagree or an id repeats within the call.
        """
        item_ids = list(item_ids)
        if not item_ids:
            return
        vecs = normalised(vectors)
        if vecs.shape != (len(item_ids), self.dim):
            raise InvalidInput(f"expected {len(item_ids)} vectors of dimension {self.dim}, got {vecs.shape}")
        if len(set(item_ids)) != len(item_ids):
            raise InvalidInput("item ids repeat within one add")
        self.remove([i for i in item_ids if i in self._label_of])
        labels = np.arange(self._next, self._next + len(item_ids), dtype=np.int64)
        self._next += len(item_ids)
        self._cpu.add_with_ids(vecs, labels)
        for item_id, label in zip(item_ids, labels.tolist()):
            self._label_of[item_id] = label
            self._id_of[label] = item_id
        self._gpu_stale = True

    def remove(self, item_ids: Iterable[str]) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        labels = [self._label_of.pop(i) for i in item_ids if i in self._label_of]
        if not labels:
            return 0
        for label in labels:
            del self._id_of[label]
        if self.kind == "flat":
            self._cpu.remove_ids(np.asarray(labels, dtype=np.int64))
        else:
            self._tombstones += len(labels)
        self._gpu_stale = True
        return len(labels)

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored (normalised) vectors of `item_ids`.

        Raises:
            InvalidInput: an id is not in the index.
        """
        missing = [i for i in item_ids if i not in self._label_of]
        if missing:
            raise InvalidInput(f"items not in the index: {', '.join(missing[:5])}")
        return np.vstack([self._cpu.reconstruct(self._label_of[i]) for i in item_ids]).astype(np.float32)

    # Search --------------------------------------------------------------------------------------------------

    def _searcher(self):
        if not self._want_gpu:
            return self._cpu
        if self._gpu is None or self._gpu_stale:
            self._gpu = self._to_gpu()
            self._gpu_stale = False
        return self._gpu if self._gpu is not None else self._cpu

    def _to_gpu(self):
        """A GPU copy of the CPU index, or None (CPU fallback) when FAISS-GPU is absent or the copy fails."""
        if self.kind != "flat" or not faiss_gpu_available():
            self.backend = "cpu"
            return None
        try:
            import faiss

            if not hasattr(self, "_gpu_resources"):
                self._gpu_resources = faiss.StandardGpuResources()
            gpu = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._cpu)
        except Exception as exc:  # noqa: BLE001 - any GPU failure means: search on the CPU
            log.warning("FAISS GPU copy failed (%s); searching on the CPU", exc)
            self._want_gpu = False
            self.backend = "cpu"
            return None
        self.backend = "gpu"
        return gpu

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-`k` items by inner product for each query row: (scores, item ids) with -inf/'' padding dropped.

        Raises:
            InvalidInput: the query dimension is wrong or k < 1.
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise InvalidInput(f"query dimension {q.shape[1]} does not match the index dimension {self.dim}")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        if not self._label_of:
            return np.zeros((len(q), 0), dtype=np.float32), [[] for _ in range(len(q))]
        fetch = min(k + self._tombstones, self._cpu.ntotal)
        try:
            scores, labels = self._searcher().search(q, fetch)
        except RuntimeError as exc:
            if self._searcher() is self._cpu:
                raise Unavailable(f"FAISS search failed: {exc}") from exc
            log.warning("GPU search failed (%s); falling back to the CPU index", exc)
            self._want_gpu, self._gpu, self.backend = False, None, "cpu"
            scores, labels = self._cpu.search(q, fetch)
        ids, out_scores = [], np.full((len(q), k), -np.inf, dtype=np.float32)
        id_of = self._id_of
        for row in range(len(q)):
            keep = [n for n, label in enumerate(labels[row].tolist()) if label in id_of][:k]
            ids.append([id_of[label] for label in labels[row][keep].tolist()])
            out_scores[row, :len(keep)] = scores[row][keep]
        return out_scores, ids

    # Persistence ---------------------------------------------------------------------------------------------

    def save(self, folder: Path, model_version: str, catalog_fingerprint: str) -> Manifest:
        """Write index, ids and manifest into `folder`, each atomically; the manifest (last) holds checksums."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / INDEX_FILE, faiss.serialize_index(self._cpu).tobytes())
        ids = {"labels": self._label_of, "next": self._next, "tombstones": self._tombstones,
               "hashes": {k: v for k, v in self.hashes.items() if k in self._label_of}}
        atomic_write_bytes(folder / IDS_FILE, json.dumps(ids).encode())
        manifest = Manifest(model_version=model_version, item_count=len(self), dim=self.dim, kind=self.kind,
                            catalog_fingerprint=catalog_fingerprint,
                            checksums={INDEX_FILE: _sha256(folder / INDEX_FILE), IDS_FILE: _sha256(folder / IDS_FILE)},
                            created_at=utcnow().isoformat() + "Z")
        atomic_write_bytes(folder / MANIFEST_FILE, json.dumps(asdict(manifest), indent=2).encode())
        return manifest

    @classmethod
    def load(cls, folder: Path, use_gpu: bool = False) -> tuple[ItemIndex, Manifest]:
        """Read an index written by `save`.

        Raises:
            Unavailable: files missing, checksums wrong or contents inconsistent (the caller rebuilds).
        """
        import faiss

        folder = folder.resolve()  # one generation throughout, even if the link is switched meanwhile
        manifest = read_manifest(folder)
        for name, expected in manifest.checksums.items():
            if not (folder / name).exists() or _sha256(folder / name) != expected:
                raise Unavailable(f"index file {folder / name} is missing or does not match its manifest")
        try:
            cpu = faiss.deserialize_index(np.fromfile(folder / INDEX_FILE, dtype=np.uint8))
            ids = json.loads((folder / IDS_FILE).read_text())
        except (RuntimeError, ValueError, OSError) as exc:
            raise Unavailable(f"cannot read the index in {folder}: {exc}") from exc
        index = cls(manifest.dim, kind=manifest.kind, use_gpu=use_gpu)
        index._cpu = cpu
        index._label_of = {k: int(v) for k, v in ids["labels"].items()}
        index._id_of = {v: k for k, v in index._label_of.items()}
        index._next, index._tombstones = int(ids["next"]), int(ids["tombstones"])
        index.hashes = dict(ids.get("hashes", {}))
        if len(index) != manifest.item_count:
            raise Unavailable(f"index in {folder} holds {len(index)} items, its manifest says {manifest.item_count}")
        return index, manifest


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a saved index.

    Raises:
        Unavailable: no readable manifest there.
    """
    try:
        return Manifest(**json.loads((folder / MANIFEST_FILE).read_text()))
    except FileNotFoundError as exc:
        raise Unavailable(f"no index built in {folder}") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise Unavailable(f"unreadable index manifest in {folder}: {exc}") from exc


# Publishing a generation as a whole ---------------------------------------------------------------------------------

STAGING_SUFFIX = ".tmp"
HOST_TAG = "h" + hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # names this machine's staging
FOREIGN_STAGING_AGE_S = 3600.0  # another machine's staging folder older than this is a dead writer's
KEEP_GENERATIONS = 2  # the published one and the one before it (a reader may still be loading it)


def publish(indexes_dir: Path, version: str, write: Callable[[Path], None]) -> Path:
    """Write a new generation of `version` with `write(folder)` and switch `indexes_dir/version` to it atomically.

    Returns the generation folder. If `write` raises (or the process dies), the published index is untouched and
    the staging folder is removed (now, or by the next publish after a crash).
    """
    indexes_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(indexes_dir)
    stamp = f"{os.getpid()}-{time.time_ns()}-{HOST_TAG}"
    staging = indexes_dir / f".staging-{stamp}-{version}{STAGING_SUFFIX}"
    staging.mkdir()
    try:
        write(staging)
        fsync_dir(staging)
        generation = indexes_dir / f".{version}.gen-{stamp}"
        os.rename(staging, generation)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    link = indexes_dir / version
    if link.is_dir() and not link.is_symlink():  # a folder written before generations: move it aside once
        os.rename(link, indexes_dir / f".{version}.gen-0-legacy")
    tmp_link = indexes_dir / f".staging-{stamp}-{version}.link{STAGING_SUFFIX}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(generation.name, tmp_link)
    os.replace(tmp_link, link)  # the switch: one rename
    fsync_dir(indexes_dir)
    _prune_generations(indexes_dir, version, generation)
    log.info("published index %s as %s", version, generation.name)
    return generation


def current_generation(indexes_dir: Path, version: str) -> Path | None:
    """The generation folder `indexes_dir/version` points at (the folder itself for a pre-generation layout)."""
    link = indexes_dir / version
    return link.resolve() if link.exists() else None


def remove_leftovers(indexes_dir: Path, foreign_age_s: float = FOREIGN_STAGING_AGE_S) -> int:
    """Remove staging folders and links whose writer process is gone; returns how many.

    In a shared model store another machine's writer cannot be asked whether it lives: its staging folders
    (another host tag in the name) go only once older than `foreign_age_s`.
    """
    n = 0
    for path in indexes_dir.glob(f".staging-*{STAGING_SUFFIX}"):
        parts = path.name.split("-")
        pid = int(parts[1]) if parts[1].isdigit() else 0
        host = parts[3] if len(parts) > 4 and parts[3].startswith("h") and len(parts[3]) == 9 else HOST_TAG
        if host != HOST_TAG:
            try:
                if time.time() - path.lstat().st_mtime < foreign_age_s:
                    continue  # maybe still being written on its machine
            except FileNotFoundError:
                continue
        elif pid == os.getpid() or (pid and _alive(pid)):
            continue  # its writer is still running (maybe another thread of this process)
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
        log.info("removed leftover index staging %s", path.name)
        n += 1
    return n


def _prune_generations(indexes_dir: Path, version: str, current: Path) -> None:
    gens = sorted((p for p in indexes_dir.glob(f".{version}.gen-*") if p.is_dir() and p != current),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in gens[KEEP_GENERATIONS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
