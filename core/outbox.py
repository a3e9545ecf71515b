"""Storage deletions through an outbox: rows written with the deletion of what the blobs belonged to, so a
deletion the API answered 204 for is finished even when storage and the broker were down at the time.

`schedule` adds the rows in the caller's transaction and tries them right after its commit; `purge` deletes due
prefixes and their rows, and pushes a failure back with exponential backoff. The reconciler purges every run.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.db import after_commit, session_scope
from core.runtime import Runtime
from models import BlobDeletion, utcnow

log = logging.getLogger(__name__)
BATCH = 200
BACKOFF_FIRST_S, BACKOFF_MAX_S = 30.0, 3600.0


def schedule(session: Session, runtime: Runtime, prefixes: list[str]) -> None:
    rows = [BlobDeletion(prefix=prefix, next_attempt_at=utcnow()) for prefix in prefixes]
    session.add_all(rows)
    session.flush()
    after_commit(session, partial(purge, runtime, [row.id for row in rows]))


def purge(runtime: Runtime, ids: list[str] | None = None) -> int:
    """Delete the given rows' prefixes (or every due one's); returns how many were finished. Never raises for
    storage: what fails stays in the outbox for the next try."""
    done = 0
    with session_scope(runtime.sessions) as session:
        query = select(BlobDeletion).order_by(BlobDeletion.next_attempt_at).limit(BATCH).with_for_update(
            skip_locked=True)  # fmt: skip
        if ids is not None:
            query = query.where(BlobDeletion.id.in_(ids))
        else:
            query = query.where(or_(BlobDeletion.next_attempt_at.is_(None), BlobDeletion.next_attempt_at <= utcnow()))
        for row in session.scalars(query).all():
            try:
                runtime.storage.delete_prefix(row.prefix)
            except Exception as exc:
                row.attempts += 1
                wait = min(BACKOFF_FIRST_S * 2 ** (row.attempts - 1), BACKOFF_MAX_S)
                row.next_attempt_at = utcnow() + timedelta(seconds=wait)
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                log.warning("blob deletion of %s deferred %.0f s: %s", row.prefix, wait, row.last_error)
                continue
            session.delete(row)
            done += 1
    return done
