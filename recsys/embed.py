"""Embed stale items (no vector, other encoder version, or changed text) with the current recsys encoder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session
from tqdm import tqdm

from newsdesk.db import utcnow
from newsdesk.errors import InvalidInput
from newsdesk.settings import Settings
from recsys.tables import Item, ItemVector
from recsys.text import item_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

BASE_VERSION = "base"  # the model_version label of vectors made by the untuned base encoder
BATCH = 256  # items per database round trip; the encoder batches inside it


@dataclass
class EmbedReport:
    """How many items were embedded, with which encoder version."""

    model_version: str
    embedded: int
    seconds: float


def encoder_version(session: Session, settings: Settings) -> tuple[str, Path]:
    """(version label, folder) of the recsys encoder in service: the current registry version, else the base one."""
    from finetune.service import encoder_path

    version, folder = encoder_path(session, settings, "recsys")
    return (version or BASE_VERSION), Path(folder)


def stale_items_query(model_version: str) -> sa.Select:
    """Items without an up-to-date vector for `model_version`."""
    return (sa.select(Item.item_id, Item.title, Item.category, Item.description, Item.text_hash)
            .outerjoin(ItemVector, ItemVector.item_id == Item.item_id)
            .where(sa.or_(ItemVector.item_id.is_(None), ItemVector.model_version != model_version,
                          ItemVector.text_hash != Item.text_hash))
            .order_by(Item.item_id))


def count_stale(session: Session, model_version: str) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(stale_items_query(model_version).subquery())) or 0


CATALOG_VECTORS = "catalog_vectors.npz"  # vectors an encoder folder ships for the catalog it was evaluated on


def save_catalog_vectors(folder: Path, item_ids: list[str], hashes: list[str], vectors: np.ndarray) -> None:
    """Write (item id, text hash, vector) for the catalog into an encoder folder."""
    np.savez(folder / CATALOG_VECTORS, item_ids=np.asarray(item_ids), hashes=np.asarray(hashes),
             vectors=np.asarray(vectors, dtype=np.float32))


def _shipped_vectors(folder: Path | None) -> dict[tuple[str, str], np.ndarray]:
    """(item id, text hash) -> vector from an encoder folder's catalog_vectors.npz (empty when absent/unreadable)."""
    if folder is None or not (Path(folder) / CATALOG_VECTORS).is_file():
        return {}
    try:
        data = np.load(Path(folder) / CATALOG_VECTORS)
        return {(str(i), str(h)): v for i, h, v in zip(data["item_ids"], data["hashes"], data["vectors"])}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring %s in %s: %s", CATALOG_VECTORS, folder, exc)
        return {}


def embed_stale(session: Session, settings: Settings, *, encoder: SentenceTransformer | Any | None = None,
                model_version: str | None = None, batch_size: int = 64, commit: bool = False) -> EmbedReport:
    """Embed every stale item and store its normalised vector with the encoder version.

    Flushes per batch; with `commit` it also commits per batch, so a long run interrupted half-way keeps what it
    embedded (the next run only embeds what is still stale).

    Raises:
        Unavailable: the encoder cannot be loaded.
        InvalidInput: a `model_version` other than the one in service without an `encoder`.
    """
    import time

    start = time.perf_counter()
    folder = None
    if encoder is None or model_version is None:
        version, folder = encoder_version(session, settings)
        if encoder is None and model_version not in (None, version):
            raise InvalidInput(f"no encoder given for version {model_version!r} (the one in service is {version!r})")
        model_version = model_version or version
    rows = session.execute(stale_items_query(model_version)).all()
    shipped = _shipped_vectors(folder) if encoder is None and rows else {}
    reused = 0
    if shipped:  # the fine-tune already embedded these texts with this very encoder
        known = [r for r in rows if (r.item_id, r.text_hash) in shipped]
        for lo in range(0, len(known), BATCH):
            chunk = known[lo:lo + BATCH]
            _store(session, chunk, np.vstack([shipped[(r.item_id, r.text_hash)] for r in chunk]), model_version)
            if commit:
                session.commit()
        reused = len(known)
        log.info("reused %d vectors shipped with %s", reused, model_version)
        rows = [r for r in rows if (r.item_id, r.text_hash) not in shipped]
    if rows and encoder is None:  # load the encoder only when there is something to embed (on its fastest path)
        from finetune.service import catalog_encoder

        encoder = catalog_encoder(settings, folder)
    done = reused
    with tqdm(total=len(rows), desc=f"embedding ({model_version})", unit="items", disable=None) as bar:
        for lo in range(0, len(rows), BATCH):
            chunk = rows[lo:lo + BATCH]
            texts = [item_text(r.title, r.category, r.description) for r in chunk]
            vectors = np.asarray(encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
            _store(session, chunk, vectors, model_version)
            if commit:
                session.commit()
            done += len(chunk)
            bar.update(len(chunk))
    seconds = time.perf_counter() - start
    if done:
        log.info("embedded %d items with %s in %.1fs", done, model_version, seconds)
    return EmbedReport(model_version=model_version, embedded=done, seconds=round(seconds, 2))


def _store(session: Session, chunk: list[Any], vectors: np.ndarray, model_version: str) -> None:
    ids = [r.item_id for r in chunk]
    session.execute(sa.delete(ItemVector).where(ItemVector.item_id.in_(ids)))
    now = utcnow()
    session.execute(sa.insert(ItemVector), [
        {"item_id": r.item_id, "model_version": model_version, "text_hash": r.text_hash, "dim": int(v.shape[0]),
         "vector": v.astype(np.float32).tobytes(), "updated_at": now} for r, v in zip(chunk, vectors)])
    session.flush()


def load_vectors(session: Session, model_version: str) -> tuple[list[str], np.ndarray]:
    """(item ids, n x d float32 matrix) of the up-to-date vectors of `model_version`, ordered by item id."""
    rows = session.execute(
        sa.select(ItemVector.item_id, ItemVector.vector, ItemVector.dim)
        .join(Item, Item.item_id == ItemVector.item_id)
        .where(ItemVector.model_version == model_version, ItemVector.text_hash == Item.text_hash)
        .order_by(ItemVector.item_id)).all()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = np.vstack([np.frombuffer(r.vector, dtype=np.float32, count=r.dim) for r in rows])
    return [r.item_id for r in rows], matrix
