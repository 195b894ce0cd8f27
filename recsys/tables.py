"""recsys tables: `items`, `interactions` (the data contract finetune reads with plain SQL) and `item_vectors`."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from newsdesk.db import Base, utcnow


class Item(Base):
    """One catalog item; `text_hash` changes whenever the encoder text changes (so its vector goes stale)."""

    __tablename__ = "items"

    item_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text, nullable=False)
    description: Mapped[str] = mapped_column(sa.Text, nullable=False, default="", server_default="")
    category: Mapped[str] = mapped_column(sa.String(128), nullable=False, default="", server_default="")
    tags: Mapped[str] = mapped_column(sa.Text, nullable=False, default="", server_default="")  # comma-separated
    url: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    source: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    text_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="", server_default="")
    # the topic model's label for an item without a category (recsys/topics.py); stale when the text or the
    # topic version in service changes
    topic: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    topic_score: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    topic_version: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    topic_hash: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)

    @property
    def shown_category(self) -> str:
        """The item's category, else its predicted topic, else ""."""
        return self.category or self.topic or ""


class Interaction(Base):
    """A user's rating, click, impression or not-interested mark on an item."""

    __tablename__ = "interactions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(sa.String(128), nullable=False, index=True)
    item_id: Mapped[str] = mapped_column(sa.String(128), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    rating: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    ts: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)
    source: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="", server_default="")
    impression_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)


class ItemVector(Base):
    """An item's normalised embedding (float32 bytes) by one encoder version; stale when version or text differ."""

    __tablename__ = "item_vectors"

    item_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    text_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    dim: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    vector: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)
