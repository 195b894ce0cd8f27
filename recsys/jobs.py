"""Worker job: keep item vectors and the index in step with the catalog and the recsys encoder version."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import sqlalchemy as sa

from newsdesk.db import session_scope
from newsdesk.errors import Conflict, NewsdeskError
from newsdesk.settings import Settings

log = logging.getLogger(__name__)

INTERVAL_S = 120
REFIT_GROWTH = 0.10  # refit the collaborative map once positives grew by 10% since the last fit

_lock = threading.Lock()


def register(scheduler: Any, settings: Settings, stop_event: threading.Event) -> None:
    """Add the interval job that re-embeds stale items and rebuilds or syncs the index."""
    scheduler.add_job(refresh_index, "interval", seconds=INTERVAL_S, args=[settings],
                      id="recsys:refresh-index", name="re-embed stale items / sync the item index",
                      replace_existing=True)


def refresh_index(settings: Settings) -> str:
    """One pass: full rebuild on a new encoder version or enough new positives; else embed + sync stale items; else
    relabel the uncategorised items' predicted topics when a new topic version is served.

    Returns what it did ("rebuilt", "synced", "relabelled", "idle", "busy" or "failed"); errors are logged, never
    raised to the scheduler.
    """
    from recsys import service
    from recsys.embed import count_stale, encoder_version
    from recsys.index import read_manifest
    from recsys.recommender import positive_filter
    from recsys.tables import Interaction, Item, ItemVector
    from recsys.topics import labels_behind

    if not _lock.acquire(blocking=False):
        return "busy"
    try:
        with session_scope(settings.database_url) as session:
            if not session.scalar(sa.select(sa.func.count()).select_from(Item)):
                return "idle"
            version, _ = encoder_version(session, settings)
            folder = settings.indexes_dir / version
            try:
                indexed = read_manifest(folder).item_count
                has_index = True
            except NewsdeskError:
                has_index, indexed = False, 0
            positives = session.scalar(sa.select(sa.func.count()).select_from(Interaction)
                                       .where(positive_filter(settings.recsys.positive_rating))) or 0
            fitted = _fitted_positives(folder)
            if not has_index or positives > max(fitted, 1) * (1 + REFIT_GROWTH) and positives >= 20:
                status = service.rebuild_index(session, settings)
                log.info("recsys job rebuilt the index: %s", status)
                return "rebuilt"
            vectors = session.scalar(sa.select(sa.func.count()).select_from(ItemVector)
                                     .where(ItemVector.model_version == version)) or 0
            if count_stale(session, version) or vectors != indexed:  # new, changed or removed items
                status = service.sync_index(session, settings)
                log.info("recsys job synced the index: %s", status)
                return "synced"
            topic_version = labels_behind(session)
            if topic_version is not None:  # a new topic version over an unchanged catalog
                labelled = service.relabel_topics(session, settings)  # a model that fails to load is logged
                if not labelled:
                    return "failed"
                log.info("recsys job relabelled %d item(s) with topic version %s", labelled, topic_version)
                return "relabelled"
            return "idle"
    except Conflict as exc:  # an `index build` (or another machine's job) is at it
        log.info("recsys index refresh skipped: %s", exc.message)
        return "busy"
    except NewsdeskError as exc:
        log.warning("recsys index refresh failed: %s", exc.message)
        return "failed"
    finally:
        _lock.release()


def _fitted_positives(folder: Any) -> int:
    try:
        return int(json.loads((folder / "collab.json").read_text())["stats"]["positives"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
