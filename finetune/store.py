"""The model store: where published versions live for every machine, and this machine's cache of them.

Without `NEWSDESK_MODEL_STORE` the store is this home's `models/` folder, and a version's folder is used where it
lies (as before). With a shared store (a directory every machine mounts, e.g. over NFS):

- `publish_folder` copies a finished staging folder to `<store>/<task>/.incoming-…` and renames it to
  `<store>/<task>/<version>` in one step, with a `store.json` naming every file and its size: a reader sees the whole
  version or none of it, whatever kills the writer. The staged copy then becomes this machine's cache entry.
- `local_folder` gives the folder to load a version from: `NEWSDESK_HOME/models/<task>/<version>`, copied from the
  store (temp folder, checked against `store.json`, renamed) the first time and whenever the store's copy differs
  from the cached one. Version folders never change once published, so the cache needs no invalidation beyond
  that check; when the store cannot be reached a cached copy keeps serving (logged).

The database row of a version records its folder in the store; the store-relative key (`<task>/<version>`, the
last two parts of that path) finds it on a machine that mounts the store elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from newsdesk.errors import Conflict, Unavailable
from newsdesk.files import fsync_dir
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

STORE_FILE = "store.json"  # in every version published to a shared store: publish id, files and sizes
SOURCE_FILE = ".source.json"  # in a cached copy: the store.json it was copied from


def key_of(path: str | Path) -> Path:
    """`<task>/<version>`: a version folder's place relative to the store root."""
    path = Path(path)
    return Path(path.parent.name) / path.name


def store_folder(settings: Settings, path: str | Path) -> Path:
    """Where the version recorded at `path` lies in this machine's view of the store (may not exist)."""
    if not settings.shared_model_store:
        return Path(path)
    return settings.model_store_dir / key_of(path)


def cache_folder(settings: Settings, path: str | Path) -> Path:
    """Where this machine's copy of the version recorded at `path` lies or will lie once `local_folder` fetched it
    (the recorded folder itself without a shared store); nothing is fetched."""
    if not settings.shared_model_store:
        return Path(path)
    return settings.models_dir / key_of(path)


def is_published(settings: Settings, path: str | Path) -> bool:
    """True when the version recorded at `path` can be loaded here (in the store, or at its recorded path)."""
    return store_folder(settings, path).is_dir() or Path(path).is_dir()


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (STORE_FILE, SOURCE_FILE)}


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        if path.is_symlink():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp_name(prefix: str, version: str) -> str:
    return f".{prefix}-{version}-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"


def publish_folder(staged: Path, settings: Settings, task: str, version: str) -> Path:
    """Move or copy a complete staging folder to `<store>/<task>/<version>` atomically; returns that folder.

    Raises:
        Conflict: that version folder already exists in the store.
    """
    final = settings.model_store_dir / task / version
    if final.exists():
        raise Conflict(f"model folder {final} already exists")
    if not settings.shared_model_store:
        os.replace(staged, final)
        return final
    record = {"task": task, "version": version, "publish_id": uuid.uuid4().hex, "host": socket.gethostname(),
              "files": _file_sizes(staged)}
    (staged / STORE_FILE).write_text(json.dumps(record, indent=2))
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(settings)
    incoming = final.parent / _tmp_name("incoming", version)
    try:
        shutil.copytree(staged, incoming)
        _fsync_tree(incoming)
        os.rename(incoming, final)  # fails if another writer published the same name meanwhile
    except FileExistsError as exc:
        raise Conflict(f"model folder {final} already exists") from exc
    except OSError as exc:
        if final.exists():
            raise Conflict(f"model folder {final} already exists") from exc
        raise Unavailable(f"cannot publish {task} {version} to the model store {settings.model_store_dir}: {exc}"
                          ) from exc
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    fsync_dir(final.parent)
    log.info("published %s %s to the model store %s", task, version, settings.model_store_dir)
    cache = settings.models_dir / task / version
    (staged / SOURCE_FILE).write_text((final / STORE_FILE).read_text())
    if cache.exists():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        os.replace(staged, cache)  # this machine's cached copy: no download for the process that trained it
    return final


def _fingerprint(folder: Path) -> str:
    """The store.json of a published version (a listing of names and sizes for a folder without one)."""
    try:
        return (folder / STORE_FILE).read_text()
    except FileNotFoundError:
        return json.dumps(_file_sizes(folder), sort_keys=True)


def local_folder(settings: Settings, path: str | Path) -> Path:
    """The folder to load the version recorded at `path` from on this machine (fetched into the cache if need be).

    Raises:
        Unavailable: the version is neither in the store nor in the cache, or its copy came out incomplete.
    """
    if not settings.shared_model_store:
        return Path(path)
    key = key_of(path)
    source = settings.model_store_dir / key
    if not source.is_dir() and Path(path).is_dir():
        source = Path(path)  # recorded before the store was set, or the store's own path on this machine
    cache = cache_folder(settings, path)
    if source.resolve() == cache.resolve():
        return cache
    try:
        if not source.is_dir():
            raise FileNotFoundError(f"no folder {source}")
        wanted = _fingerprint(source)
    except OSError as exc:
        if (cache / SOURCE_FILE).is_file():
            log.warning("model store: %s unreachable (%s): serving the cached copy", key, exc)
            return cache
        raise Unavailable(f"model version {key} is not in the model store {settings.model_store_dir}",
                          {"version": key.name}) from exc
    try:
        if (cache / SOURCE_FILE).read_text() == wanted:
            return cache
    except OSError:
        pass
    return _fetch(source, cache, wanted)


def _fetch(source: Path, cache: Path, wanted: str) -> Path:
    """Copy `source` to a temp folder beside `cache`, check it, and rename it into place."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.parent / _tmp_name("fetch", cache.name)
    start = time.perf_counter()
    try:
        shutil.copytree(source, tmp)
        expected = json.loads(wanted).get("files") if wanted.startswith("{") else None
        if isinstance(expected, dict) and _file_sizes(tmp) != expected:
            raise Unavailable(f"the store's copy of {key_of(source)} is incomplete (files or sizes differ)")
        (tmp / SOURCE_FILE).write_text(wanted)
        if cache.exists():  # an older copy under the same name: move it aside (a loaded model is in memory)
            old = cache.parent / _tmp_name("old", cache.name)
            os.rename(cache, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, cache)
        except OSError:  # another process of this machine fetched it at the same time
            if (cache / SOURCE_FILE).is_file() and (cache / SOURCE_FILE).read_text() == wanted:
                return cache
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("fetched model %s from the store in %.1fs", key_of(source), time.perf_counter() - start)
    return cache


def remove_leftovers(settings: Settings, max_age_s: float = 3600.0) -> int:
    """Remove this machine's dead fetch folders and any writer's `.incoming-*` folders older than `max_age_s`."""
    n = 0
    now = time.time()
    roots = [settings.models_dir] + ([settings.model_store_dir] if settings.shared_model_store else [])
    for root in roots:
        for pattern in (".incoming-*", ".fetch-*", ".old-*"):
            for path in root.glob(f"*/{pattern}"):
                try:
                    if now - path.stat().st_mtime > max_age_s:
                        shutil.rmtree(path, ignore_errors=True)
                        n += 1
                except FileNotFoundError:
                    continue
    return n
