"""Users and API tokens: create, authenticate, onboarding topics, bearer tokens stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from newsdesk.db import utcnow
from newsdesk.errors import Conflict, InvalidInput, NotFound
from web.tables import ApiToken, User
from web.vocabulary import ROLES, TOKEN_KINDS

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$")
MIN_PASSWORD = 6
LAST_USED_RESOLUTION_S = 60
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}  # reader < analyst < admin
# A fixed hash so that an unknown username costs as much time as a wrong password (no user enumeration by timing).
_DUMMY_HASH = generate_password_hash("not-a-password")


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its clear text)."""

    id: int
    username: str
    kind: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool
    expires_at: datetime | None = None


def role_at_least(role: str, needed: str) -> bool:
    """True when `role` is `needed` or a role above it (admin > analyst > reader)."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


def create_user(session: Session, username: str, password: str, role: str = "reader") -> User:
    """Create a user with a hashed password; the caller commits.

    Raises:
        InvalidInput: bad username, short password or unknown role.
        Conflict: the username is taken.
    """
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise InvalidInput("username must be 2-64 letters, digits or _.@- and start with a letter or digit",
                           {"field": "username"})
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}", {"field": "role"})
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters", {"field": "password"})
    if get_user(session, username) is not None:
        raise Conflict(f"user {username!r} already exists", {"username": username})
    user = User(username=username, password_hash=generate_password_hash(password), role=role, topics=None,
                created_at=utcnow(), active=True)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create of the same name
        session.rollback()
        raise Conflict(f"user {username!r} already exists", {"username": username}) from exc
    return user


def get_user(session: Session, username: str) -> User | None:
    """The user called `username`, or None."""
    return session.scalar(sa.select(User).where(User.username == username))


def require_user(session: Session, username: str) -> User:
    """The user called `username`.

    Raises:
        NotFound: no such user.
    """
    user = get_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}", {"username": username})
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(sa.select(User).order_by(User.username)))


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user whose password matches, or None (same cost whether or not the user exists)."""
    user = get_user(session, username) if isinstance(username, str) else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(user.password_hash, password or "") or not user.active:
        return None
    return user


def set_password(session: Session, username: str, password: str) -> None:
    """Replace a user's password.

    Raises:
        NotFound: no such user.  InvalidInput: password too short.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters", {"field": "password"})
    user = require_user(session, username)
    user.password_hash = generate_password_hash(password)
    end_sessions(user)


def set_role(session: Session, username: str, role: str) -> User:
    """Change a user's role; their open sessions end (the next request signs in again with the new role).

    Raises:
        NotFound: no such user.  InvalidInput: unknown role.
    """
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}, got {role!r}", {"field": "role"})
    user = require_user(session, username)
    if user.role != role:
        user.role = role
        end_sessions(user)
    return user


def set_active(session: Session, username: str, active: bool) -> User:
    """Deactivate (no login, no token, every session ended) or reactivate a user.

    Raises:
        NotFound: no such user.
    """
    user = require_user(session, username)
    user.active = active
    end_sessions(user)
    return user


def end_sessions(user: User) -> None:
    """Every session cookie issued to `user` so far stops working (logout, password, role, deactivation)."""
    user.session_version = (user.session_version or 0) + 1


def set_topics(session: Session, user: User, topics: list[str]) -> list[str]:
    """Store the onboarding choices (topics and tickers); returns the cleaned list.

    Raises:
        InvalidInput: too many or too long entries.
    """
    cleaned: list[str] = []
    for topic in topics:
        topic = str(topic).strip()
        if not topic:
            continue
        if len(topic) > 64:
            raise InvalidInput("a topic is at most 64 characters", {"field": "topics"})
        if topic not in cleaned:
            cleaned.append(topic)
    if len(cleaned) > 50:
        raise InvalidInput("choose at most 50 topics", {"field": "topics"})
    user.topics = cleaned
    return cleaned


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, username: str, kind: str = "user", expires_in: timedelta | None = None) -> str:
    """Create a bearer token for `username`, valid until revoked or for `expires_in`; returns the clear text (shown
    once, only its hash is stored).

    Raises:
        NotFound: no such user.  InvalidInput: unknown kind or a non-positive expiry.
    """
    if kind not in TOKEN_KINDS:
        raise InvalidInput(f"token kind must be one of {', '.join(TOKEN_KINDS)}", {"field": "kind"})
    if expires_in is not None and expires_in.total_seconds() <= 0:
        raise InvalidInput("a token's expiry must be in the future", {"field": "expires"})
    user = require_user(session, username)
    token = f"nd{'i' if kind == 'ingest' else 'u'}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    session.add(ApiToken(user_id=user.id, token_hash=_hash_token(token), prefix=token[:12], kind=kind,
                         created_at=now, revoked=False, expires_at=now + expires_in if expires_in else None))
    session.flush()
    return token


@dataclass(frozen=True)
class TokenOwner:
    """The user behind a valid bearer token (plain values, no ORM object)."""

    id: int
    username: str
    role: str
    topics: list[str] | None
    active: bool


_TOKEN_OWNER = (sa.select(ApiToken.id, ApiToken.kind, ApiToken.revoked, ApiToken.last_used_at, ApiToken.expires_at,
                          User.id.label("user_id"), User.username, User.role, User.topics, User.active)
                .join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == sa.bindparam("token_hash")))


def token_owner(session: Session, token: str, kind: str = "user") -> TokenOwner | None:
    """The active user owning an unrevoked token of `kind`, or None; records the last use (at most once a minute).

    One column query on the API's hot path (no ORM objects: loading two entities cost more than the query).
    """
    if not token or len(token) > 200:
        return None
    found = session.connection().execute(_TOKEN_OWNER, {"token_hash": _hash_token(token)}).first()
    now = utcnow()
    if found is None or found.revoked or found.kind != kind or not found.active:
        return None
    if found.expires_at is not None and found.expires_at <= now:
        return None
    if found.last_used_at is None or (now - found.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S:
        # at most one write a minute per token: API reads stay reads
        session.execute(sa.update(ApiToken).where(ApiToken.id == found.id).values(last_used_at=now))
    topics = list(found.topics) if found.topics is not None else None
    return TokenOwner(found.user_id, found.username, found.role, topics, bool(found.active))


def verify_token(session: Session, token: str, kind: str = "user") -> User | None:
    """The active user owning an unrevoked token of `kind`, or None; records the last use."""
    owner = token_owner(session, token, kind)
    return session.get(User, owner.id) if owner is not None else None


def list_tokens(session: Session, username: str | None = None) -> list[TokenInfo]:
    """Tokens (without their clear text), newest first."""
    query = sa.select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if username:
        query = query.where(User.username == username)
    rows = session.execute(query.order_by(ApiToken.id.desc())).all()
    return [TokenInfo(t.id, name, t.kind, t.prefix, t.created_at, t.last_used_at, t.revoked, t.expires_at)
            for t, name in rows]


def revoke_token(session: Session, token_id: int) -> None:
    """Revoke a token by id.

    Raises:
        NotFound: no such token.
    """
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}", {"token_id": token_id})
    row.revoked = True
