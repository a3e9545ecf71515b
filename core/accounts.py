"""Users and API keys: creation (API, operator tool, bootstrap) and lookup by key."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from models import ApiKey, User, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "svd_"
LAST_USED_PRECISION = timedelta(minutes=5)


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits, so a plain SHA-256 is enough (no slow KDF needed to resist guessing).
    return hashlib.sha256(key.encode()).hexdigest()


def generate_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def add_key(session: Session, user: User, key: str | None = None) -> str:
    return new_key(session, user, key)[1]


def new_key(session: Session, user: User, key: str | None = None) -> tuple[ApiKey, str]:
    """A new API key of `user`: its row and the secret, in clear (only its hash is stored)."""
    key = key or generate_api_key()
    row = ApiKey(user_id=user.id, key_hash=hash_api_key(key), prefix=key[:10])
    session.add(row)
    session.flush()
    return row, key


def revoke_key(row: ApiKey) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def rotate_key(session: Session, row: ApiKey) -> tuple[ApiKey, str]:
    """A new key for the same user, and the old one revoked, in one transaction."""
    revoke_key(row)
    return new_key(session, row.user)


def create_user(session: Session, name: str, role: str = "user", key: str | None = None) -> tuple[User, str]:
    """A new user and its first API key (returned in clear, never stored)."""
    user = User(name=name, role=role, webhook_secret=generate_webhook_secret())
    session.add(user)
    session.flush()
    return user, add_key(session, user, key)


def user_for_key(session: Session, key: str) -> User | None:
    """The user of an active key: one query for the key and its user (the key's row is loaded with its user)."""
    query = (
        select(ApiKey)
        .options(joinedload(ApiKey.user, innerjoin=True))
        .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    )
    api_key = session.scalar(query)
    if api_key is None:
        return None
    now = utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_PRECISION:
        record_use(session, api_key, now)  # at most one write per key every few minutes, not one per request
    return api_key.user


def record_use(session: Session, api_key: ApiKey, now: datetime) -> None:
    """Sets the key's `last_used_at`, now and without waiting: a request that finds the key's row locked (another
    one is recording its use) leaves it to that one. A plain update, flushed with the request's next query, made
    concurrent requests with the key queue on its row one commit after another, and in the API it could deadlock:
    the row locked in a dependency's worker thread, its commit after the route's, whose thread the waiters held."""
    stale = or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_PRECISION)
    free = select(ApiKey.id).where(ApiKey.id == api_key.id, stale).with_for_update(skip_locked=True)
    statement = update(ApiKey).where(ApiKey.id == free.scalar_subquery()).values(last_used_at=now)
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    if result.rowcount:
        set_committed_value(api_key, "last_used_at", now)


def ensure_admin_key(session: Session, key: str, name: str = "admin") -> User | None:
    """The user this key authenticates, made an admin; created with the key if missing. A revoked key stays
    revoked (None): a restart must not bring back a key an operator took away."""
    existing = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if existing is not None:
        if existing.revoked_at is not None:
            log.warning("the bootstrap admin key %s... was revoked; it stays revoked", existing.prefix)
            return None
        existing.user.role = "admin"
        return existing.user
    user, _ = create_user(session, name, "admin", key)
    return user
