"""ORM classes owned by web: `users` (login, role, onboarding topics), `api_tokens` (hashed bearer tokens) and
`login_failures` (the login throttle's shared counters)."""

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
    # Bumped at logout, password change, role change and deactivation: every older session cookie stops working.
    session_version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")


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
    expires_at: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)  # None: until revoked


class LoginFailure(Base):
    """One failed login, under each throttle key it counts for (`a:<account>`, `i:<address>`); rows older than the
    throttle window are deleted as new ones arrive."""

    __tablename__ = "login_failures"
    __table_args__ = (sa.Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    at: Mapped[datetime] = mapped_column(sa.DateTime, nullable=False)
