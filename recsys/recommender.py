"""The process-wide `Recommender`: loads the catalog snapshot and index, keeps them in sync, answers users."""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from newsdesk.db import session_scope, utcnow
from newsdesk.device import faiss_gpu_available
from newsdesk.errors import Unavailable
from newsdesk.interactions import positive_clause
from newsdesk.settings import Settings
from recsys.cache import ResultCache
from recsys.collab import MAP_FILE, META_FILE, CollabMap
from recsys.embed import encoder_version, load_vectors
from recsys.index import MANIFEST_FILE, ItemIndex, Manifest, current_generation
from recsys.index import publish as publish_generation
from recsys.interests import Reasons, blend, general_reasons, interest_items, interest_share, vary_history_reasons
from recsys.profile import CollabRows, Event, Profile, build_profile
from recsys.rank import PositiveLog, RankParams, Scored, Snapshot, cold_start, rank_for_profile
from recsys.tables import Interaction, Item

log = logging.getLogger(__name__)

TRENDING_DAYS = 7
_threadpools = None


def single_threaded():
    """BLAS and OpenMP limited to one thread for the duration: one small query does not profit from threads, and on
    a busy machine their spin-waits cost 10-100x (p99 50 ms -> 250 ms measured on 2 loaded cores)."""
    global _threadpools
    import contextlib

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return contextlib.nullcontext()
    if _threadpools is None:
        import faiss  # noqa: F401 - load its OpenMP runtime before the controller looks for libraries

        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1)


def catalog_fingerprint(item_ids: Sequence[str], hashes: dict[str, str]) -> str:
    """sha256 over the (item id, text hash) pairs an index should hold."""
    digest = hashlib.sha256()
    for item_id in item_ids:
        digest.update(f"{item_id}\t{hashes.get(item_id, '')}\n".encode())
    return digest.hexdigest()


def positive_filter(positive_rating: float) -> sa.ColumnElement[bool]:
    return positive_clause(Interaction.kind, Interaction.rating, positive_rating)


KEEP = "keep"  # ensure_index(collab=KEEP): carry the published collaborative map over to the new generation


def ensure_index(settings: Settings, model_version: str, item_ids: list[str], vectors: np.ndarray,
                 hashes: dict[str, str], *, force: bool = False, publish: bool = True,
                 collab: CollabMap | None | str = KEEP) -> tuple[ItemIndex, Manifest]:
    """The saved index for `model_version`, brought in line with the catalog (incrementally when possible).

    A missing, corrupt or wrong-kind index is rebuilt from the vectors; otherwise new and changed items are added
    (replacing old vectors) and vanished items removed. With `publish` the result is published as a new
    generation (index, ids, manifest and the collaborative map `collab`: KEEP the published one, None for none);
    `publish=False` (a request path) never writes: a stale saved index is served as it is, and the worker job
    publishes the update.
    """
    folder = settings.indexes_dir / model_version
    fingerprint = catalog_fingerprint(item_ids, hashes)
    use_gpu = faiss_gpu_available()
    want_kind = "hnsw" if len(item_ids) > settings.recsys.approx_threshold else "flat"
    index = None
    if not force:
        try:
            index, manifest = ItemIndex.load(folder, use_gpu=use_gpu)
        except Unavailable as exc:
            log.info("index for %s not usable (%s): building it%s", model_version, exc.message,
                     "" if publish else " in memory (the worker job publishes it)")
        else:
            if manifest.catalog_fingerprint == fingerprint and manifest.model_version == model_version:
                return index, manifest
            if not publish:
                log.info("index %s is behind the catalog (%d items indexed, %d in the catalog): serving it until "
                         "the worker job publishes the update", model_version, manifest.item_count, len(item_ids))
                return index, manifest
            if index.kind != want_kind or index.dim != vectors.shape[1]:
                index = None
    if index is None:
        index = ItemIndex.build(item_ids, vectors, approx_threshold=settings.recsys.approx_threshold,
                                use_gpu=use_gpu)
        index.hashes = dict(hashes)
    else:
        position = {item_id: i for i, item_id in enumerate(item_ids)}
        gone = [i for i in index.item_ids if i not in position]
        changed = [i for i in item_ids if index.hashes.get(i) != hashes.get(i) or i not in index]
        index.remove(gone)
        if changed:
            index.add(changed, vectors[[position[i] for i in changed]])
        index.hashes.update({i: hashes[i] for i in changed})
        log.info("index %s synced: %d added or updated, %d removed", model_version, len(changed), len(gone))
    if not publish:
        manifest = Manifest(model_version=model_version, item_count=len(index), dim=index.dim, kind=index.kind,
                            catalog_fingerprint=fingerprint, checksums={}, created_at="")
        return index, manifest
    previous = current_generation(settings.indexes_dir, model_version)
    saved: list[Manifest] = []

    def write(staging: Path) -> None:
        saved.append(index.save(staging, model_version, fingerprint))
        if isinstance(collab, CollabMap):
            collab.save(staging)
        elif collab == KEEP and previous is not None:
            for name in (MAP_FILE, META_FILE):
                if (previous / name).is_file():
                    shutil.copy2(previous / name, staging / name)

    publish_generation(settings.indexes_dir, model_version, write)
    return index, saved[0]


def load_snapshot(session: Session, settings: Settings, version: str | None = None) -> Snapshot:
    """Read vectors, item metadata, popularity and the (synced) index for an encoder version (default: current).

    Raises:
        Unavailable: no item has a vector for that encoder version yet.
    """
    version = version or encoder_version(session, settings)[0]
    ids, vectors = load_vectors(session, version)
    if not ids:
        raise Unavailable(f"no item vectors for encoder version {version!r}: run `newsdesk index build`")
    meta = {r.item_id: r for r in session.execute(
        sa.select(Item.item_id, Item.title, Item.category, Item.topic, Item.tags, Item.published_at, Item.text_hash))}
    hashes = {i: meta[i].text_hash for i in ids}
    index, _ = ensure_index(settings, version, ids, vectors, hashes, publish=False)  # never written from here
    # published_at is naive UTC: attach the zone before .timestamp(), which would otherwise assume local time
    published = np.array([meta[i].published_at.replace(tzinfo=timezone.utc).timestamp()
                          if meta[i].published_at else np.nan for i in ids])
    position = {item_id: i for i, item_id in enumerate(ids)}
    popularity, trending, known = feedback_arrays(session, position, settings.recsys.positive_rating)
    collab = None
    try:
        cmap = CollabMap.load(settings.indexes_dir / version)
    except Unavailable as exc:  # serve by text until the next index build refits it
        log.warning("%s; ranking by text similarity until the index is rebuilt", exc.message)
        cmap = None
    if cmap is not None:
        row_of = np.full(len(ids), -1, dtype=np.int64)
        for row, item_id in enumerate(cmap.item_ids):
            if item_id in position:
                row_of[position[item_id]] = row
        active = np.asarray([position.get(i, -1) for i in cmap.item_ids], dtype=np.int64)
        collab = CollabRows(row_of=row_of, rows=cmap.rows, scale=cmap.scale, ease=cmap.ease, active=active,
                            text_weight=cmap.args.text_weight, new_item_weight=cmap.args.new_item_weight)
    return Snapshot(model_version=version, item_ids=ids, position=position, vectors=vectors,
                    titles=[meta[i].title for i in ids],
                    categories=[meta[i].category or meta[i].topic or "" for i in ids],  # predicted when none
                    tags=[meta[i].tags for i in ids], published=published, popularity=popularity,
                    trending=trending, index=index, collab=collab, known=known,
                    positives=positive_log(session, position, settings.recsys.positive_rating))


def positive_log(session: Session, position: dict[str, int], positive_rating: float) -> PositiveLog:
    """Every positive of a catalog item as (position, unix seconds) in time order: popularity as of a user's time."""
    items, stamps = [], []
    for item_id, ts in session.execute(sa.select(Interaction.item_id, Interaction.ts)
                                       .where(positive_filter(positive_rating))):
        at = position.get(item_id)
        if at is not None:
            items.append(at)
            stamps.append(ts.replace(tzinfo=timezone.utc).timestamp() if ts.tzinfo is None else ts.timestamp())
    return PositiveLog.build(items, stamps)


def feedback_arrays(session: Session, position: dict[str, int],
                    positive_rating: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all-time popularity, trending over the last week, has-feedback mask) from one grouped scan.

    Popularity and trending count positives (clicks, ratings >= `positive_rating`), each log-scaled to [0, 1]; the
    mask is True for catalog items with any feedback (rating, click, not-interested; impressions do not count).
    """
    positive = positive_filter(positive_rating)
    since = utcnow() - timedelta(days=TRENDING_DAYS)
    query = sa.select(Interaction.item_id,
                      sa.func.sum(sa.case((positive, 1), else_=0)),
                      sa.func.sum(sa.case((sa.and_(positive, Interaction.ts >= since), 1), else_=0)),
                      sa.func.max(sa.case((Interaction.kind != "impression", 1), else_=0))
                      ).group_by(Interaction.item_id)
    counts, recent, known = np.zeros(len(position)), np.zeros(len(position)), np.zeros(len(position), dtype=bool)
    for item_id, n_all, n_recent, any_feedback in session.execute(query):
        at = position.get(item_id)
        if at is not None:
            counts[at], recent[at], known[at] = n_all or 0, n_recent or 0, bool(any_feedback)

    def scaled(values: np.ndarray) -> np.ndarray:
        return np.log1p(values) / np.log1p(values.max()) if values.max() > 0 else values

    return scaled(counts), scaled(recent), known


def user_events(session: Session, user_id: str, limit: int = 1000) -> list[Event]:
    """The user's most recent interactions as profile events (impressions left out: the profile ignores them, and
    a feed shown many times must not push the user's clicks and ratings out of the window)."""
    rows = session.execute(sa.select(Interaction.item_id, Interaction.kind, Interaction.rating, Interaction.ts)
                           .where(Interaction.user_id == user_id, Interaction.kind != "impression")
                           .order_by(Interaction.ts.desc()).limit(limit))
    return [Event(r.item_id, r.kind, r.rating, r.ts) for r in rows]


class Recommender:
    """Answers recommendation calls from an in-memory snapshot; reloads when the encoder version or index changes."""

    def __init__(self, settings: Settings, *, check_seconds: float = 5.0, refresh_seconds: float = 60.0,
                 params: RankParams | None = None) -> None:
        self.settings = settings
        self.params = params or RankParams.from_settings(settings.recsys)
        self.check_seconds, self.refresh_seconds = check_seconds, refresh_seconds
        self._snap: Snapshot | None = None
        self._stamp: tuple = ()
        self._checked = self._refreshed = 0.0
        self._lock = threading.Lock()
        self.generation = 0  # bumped when the snapshot is reloaded (cached results computed on the old one go)
        self.results = ResultCache(settings.recsys.result_cache_s)

    def _manifest_stamp(self, version: str) -> tuple:
        path = self.settings.indexes_dir / version / MANIFEST_FILE
        try:
            stat = path.stat()
        except OSError:
            return (version, None)
        return (version, stat.st_mtime_ns, stat.st_size)

    def snapshot(self, session: Session | None = None) -> Snapshot:
        """The current snapshot, reloaded if the encoder version or the saved index changed since the last check.

        Raises:
            Unavailable: no index can be built yet (no vectors).
        """
        now = time.monotonic()
        if self._snap is not None and now - self._checked < self.check_seconds:
            return self._snap
        with self._lock:
            if self._snap is not None and time.monotonic() - self._checked < self.check_seconds:
                return self._snap
            if session is None:
                with session_scope(self.settings.database_url) as own:
                    self._reload_if_needed(own)
            else:
                self._reload_if_needed(session)
            self._checked = time.monotonic()
            assert self._snap is not None
            return self._snap

    def _reload_if_needed(self, session: Session) -> None:
        version, _ = encoder_version(session, self.settings)
        if self._snap is not None and version != self._snap.model_version and \
                self._manifest_stamp(version)[1] is None:
            # a promotion: keep serving the old snapshot until the job has embedded and indexed the new version
            version = self._snap.model_version
        stamp = self._manifest_stamp(version)
        if self._snap is None or stamp != self._stamp or self._snap.model_version != version:
            self._snap = load_snapshot(session, self.settings, version)
            self._stamp = self._manifest_stamp(version)
            self._refreshed = time.monotonic()
            self.generation += 1
            log.info("recommender loaded %d items (encoder %s, %s index)", len(self._snap.item_ids), version,
                     self._snap.index.kind)
        elif time.monotonic() - self._refreshed > self.refresh_seconds:
            self._snap.popularity, self._snap.trending, self._snap.known = feedback_arrays(
                session, self._snap.position, self.params.positive_rating)
            self._snap.positives = positive_log(session, self._snap.position, self.params.positive_rating)
            self._refreshed = time.monotonic()  # cached results pick this up within their TTL (no miss storm)

    def invalidate(self) -> None:
        """Force a reload on the next call (after a rebuild in this process)."""
        with self._lock:
            self._snap, self._checked = None, 0.0
            self.generation += 1
        self.results.invalidate()

    def recommend_events(self, events: Sequence[Event], k: int = 10, topics: Sequence[str] = (), *,
                         now: float | None = None, session: Session | None = None) -> list[Scored]:
        """Top-k for a user given their events (no database access once the snapshot is loaded)."""
        snap = self.snapshot(session)
        p = self.params
        now = time.time() if now is None else now
        with single_threaded():
            profile = build_profile(events, snap.position, snap.vectors, snap.collab,
                                    positive_rating=p.positive_rating, half_life=p.history_half_life)
            if profile.empty and not topics:
                reasons = Reasons(k)
                return [Scored(s.item_id, s.score, reasons.pick(general_reasons(snap, s))) for s in
                        cold_start(snap, profile.seen, topics, k, p, now)]
            return with_interests(snap, profile, topics, k, p, now)

    def score_items(self, events: Sequence[Event], item_ids: Sequence[str]) -> np.ndarray:
        """Profile relevance of given items (impression re-ranking); items without a vector score -inf."""
        snap = self.snapshot()
        p = self.params
        profile = build_profile(events, snap.position, snap.vectors, snap.collab, positive_rating=p.positive_rating,
                                half_life=p.history_half_life)
        query = None
        if not profile.empty:
            query = profile.contrib.sum(axis=0)
            query = query / (np.linalg.norm(query) or 1.0)
        out = np.full(len(item_ids), -np.inf)
        for n, item_id in enumerate(item_ids):
            pos = snap.position.get(item_id)
            if pos is None:
                continue
            out[n] = (float(snap.vectors[pos] @ query) if query is not None else 0.0) + \
                p.popularity_weight * float(snap.popularity[pos])
        return out


def with_interests(snap: Snapshot, profile: Profile, interests: Sequence[str], k: int, params: RankParams,
                   now: float) -> list[Scored]:
    """The personal ranking with the declared interests' share of the feed blended in (all of it without history;
    `params.interest_share` falling to 0 at `params.interest_takeover` positive events), reasons varied so that no
    reason is on more than a quarter of the cards."""
    positives = len(profile.history)
    share = interest_share(positives, params.interest_share, params.interest_takeover) if interests else 0.0
    n_declared = int(round(k * share))
    personal: list[Scored] = []
    if not profile.empty:
        personal = vary_history_reasons(snap, rank_for_profile(snap, profile, k, params, now), k)
    if n_declared == 0:
        return personal
    reasons = Reasons(k)
    for s in personal[:k - n_declared]:
        reasons.counts[s.reason] += 1
    keep = {snap.position[s.item_id] for s in personal[:k - n_declared]}
    declared = interest_items(snap, interests, profile.seen, n_declared, params, now, reasons, exclude=keep)
    if len(declared) + len(personal) < k:  # too few items about the interests and no history: fill with trending
        taken = profile.seen | {s.item_id for s in declared}
        fill = cold_start(snap, taken, (), k - len(declared), params, now)
        personal = personal + [Scored(s.item_id, s.score, reasons.pick(general_reasons(snap, s)), s.reason_item_id)
                               for s in fill]
    return blend(personal, declared, k)


_recommenders: dict[tuple[str, str], Recommender] = {}
_registry_lock = threading.Lock()


def get_recommender(settings: Settings) -> Recommender:
    """The process-wide recommender for this database and index folder."""
    key = (settings.database_url, str(Path(settings.indexes_dir)))
    with _registry_lock:
        rec = _recommenders.get(key)
        if rec is None:
            rec = _recommenders[key] = Recommender(settings)
        return rec
