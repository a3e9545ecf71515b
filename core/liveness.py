"""When a running job counts as silent (its worker lost), for the reconciler and for a claim that takes it over.

A job is silent once its heartbeat is older than `heartbeat_timeout_seconds`. A database restart stops every
worker's beats while it is down, so for one timeout after the database started nothing counts as silent: the
workers that are still alive beat again within a quarter of it (`worker.lifecycle.heartbeat`) instead of having
their jobs taken from them. A worker that died before the restart is found one timeout later than it would have
been.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.settings import Settings
from models import RUNNING, Job, utcnow


def database_started_at(session: Session) -> datetime | None:
    """When the database server last started; None where it cannot say (SQLite, embedded in this process)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    started = session.scalar(select(func.pg_postmaster_start_time()))
    return started if isinstance(started, datetime) else None


def silent_before(session: Session, settings: Settings) -> datetime | None:
    """Heartbeats older than this are silent; None while none can be (the database started within a timeout)."""
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds)
    started = database_started_at(session)
    if started is not None and started > cutoff:
        return None
    return cutoff


def is_silent(session: Session, settings: Settings, job: Job) -> bool:
    if job.status != RUNNING:
        return False
    stale = utcnow() - timedelta(seconds=settings.heartbeat_timeout_seconds)
    if job.heartbeat_at is not None and job.heartbeat_at >= stale:
        return False  # beat within the timeout: silent whatever the database's start, so no query for it
    cutoff = silent_before(session, settings)
    return cutoff is not None and (job.heartbeat_at is None or job.heartbeat_at < cutoff)
