"""Ownership and idempotency: the two checks every resource route shares, written once."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.addresses import UnsafeUrl, check_url
from core.errors import Conflict, InvalidInput, NotFound
from models import IdempotencyRecord, User, utcnow

M = TypeVar("M")
IDEMPOTENCY_TTL = timedelta(hours=24)


def is_id(value: str) -> bool:
    """Whether `value` is an id as this service writes them (a lowercase UUID): anything else names no row, and
    is never sent to the database (a NUL, for one, is a PostgreSQL error)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def owned(session: Session, model: type[M], id_: str, user: User, what: str | None = None) -> M:
    """The row `id_` of `model` if it belongs to `user`; 404 otherwise (another user's ids are never revealed)."""
    row = session.get(model, id_) if is_id(id_) else None
    if row is None or getattr(row, "user_id", None) != user.id:
        raise NotFound(f"No {what or getattr(model, '__tablename__', 'resource').rstrip('s')} {id_!r}.")
    return row


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Idempotency:
    """`Idempotency-Key` for job-creating POSTs: replays the first response for the same key and body."""

    def __init__(self, session: Session, user: User, key: str | None, payload: Any) -> None:
        self.session, self.user, self.key = session, user, key
        self.hash = request_hash(payload)

    def replay(self) -> JSONResponse | None:
        if self.key is None:
            return None
        record = self.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == self.user.id, IdempotencyRecord.key == self.key
            )
        )
        if record is None:
            return None
        if record.created_at < utcnow() - IDEMPOTENCY_TTL:
            self.session.delete(record)
            self.session.flush()
            return None
        if record.request_hash != self.hash:
            raise Conflict("This Idempotency-Key was used with a different request body.")
        return JSONResponse(
            json.loads(record.response_body), status_code=record.status_code, headers={"Idempotent-Replayed": "true"}
        )

    def save(self, status_code: int, response: BaseModel) -> None:
        """Raises 409 when a concurrent request with the same key saved first: this one's transaction then rolls
        back, so the key never stands for two jobs (a retry replays the winner's answer). One statement (an
        insert that does nothing on the key's conflict), not a savepoint around an insert: a create holds its
        queue round's counter until it commits (`core.positions.join`), so every statement after it counts."""
        if self.key is None:
            return
        insert = pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert
        record = {"user_id": self.user.id, "key": self.key, "request_hash": self.hash, "status_code": status_code,
                  "response_body": response.model_dump_json()}  # fmt: skip
        statement = (
            insert(IdempotencyRecord)
            .values(**record)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(IdempotencyRecord.id)
        )
        if self.session.execute(statement).first() is None:  # uq_idempotency_user_key: the other one saved first
            raise Conflict("A request with this Idempotency-Key is in progress; retry.", headers={"Retry-After": "1"})


def checked_webhook_url(url: str | None, *, allow_private: bool) -> str | None:
    if url is None:
        return None
    try:
        check_url(url, allow_private=allow_private)
    except UnsafeUrl as exc:
        raise InvalidInput("Refused webhook URL.", errors=[{"field": "webhook_url", "detail": str(exc)}]) from exc
    return url
