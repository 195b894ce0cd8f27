"""web's words: user roles (each includes the ones before it) and API token kinds."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    READER = "reader"  # the feed
    ANALYST = "analyst"  # + the dashboard, alerts and rules
    ADMIN = "admin"  # + the model console and users


class TokenKind(StrEnum):
    USER = "user"  # the API as this user
    INGEST = "ingest"  # POST /api/v1/ingest only


ROLES: tuple[str, ...] = tuple(r.value for r in Role)
TOKEN_KINDS: tuple[str, ...] = tuple(k.value for k in TokenKind)
