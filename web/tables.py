"""ORM classes owned by web: `users` (login, role, onboarding topics) and `api_tokens` (hashed bearer tokens)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from newsdesk.db import Base, utcnow


class User(Base):
    """A person who logs in; `username` is also the recsys `user_id`."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(128), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(sa.String(256), nullable=False)
    role: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="reader")
    topics: Mapped[Any] = mapped_column(sa.JSON, nullable=True)  # None until onboarding is done
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)
    active: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=True)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored, the clear text is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), index=True,
                                         nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(sa.String(12), nullable=False)  # first characters, to tell tokens apart
    kind: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="user")
    created_at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
