"""The periodic reconciler: the database says what should be happening; make the broker and workers agree.

- messages the broker lost are sent again. A message only says "a job waits on this queue" (workers claim the
  next job in the fair order), so the queue needs as many messages as it has jobs waiting: when fewer are in the
  broker than jobs queued for over `requeue_after_seconds`, the missing ones are sent for the longest-waiting jobs.
  A backlog whose messages are all there is left alone, so duplicates do not grow with it; a spare message finds
  nothing to claim and ends;
- a running job whose heartbeat is older than `heartbeat_timeout_seconds` lost its worker (`core.liveness`): it
  goes back to the queue, or fails once its attempts are spent;
- a pending webhook delivery not attempted when due is sent again;
- idempotency records older than a day are dropped;
- storage deletions left in the outbox (storage was down when their rows were deleted) are finished;
- the queue-position counters are recounted from the queued jobs (`core.positions.repair`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core import outbox, positions
from core.celery_app import DELIVER_WEBHOOK, send
from core.db import after_commit, session_scope
from core.fairness import FAIR_ORDER
from core.jobs import change_status, enqueue_job, fail
from core.liveness import silent_before
from core.queue_depth import queue_length
from core.runtime import Runtime
from models import QUEUED, RUNNING, IdempotencyRecord, Job, WebhookDelivery, utcnow
from models.webhook import PENDING

log = logging.getLogger(__name__)
BATCH = 500


def reconcile(runtime: Runtime) -> dict[str, int]:
    settings = runtime.settings
    now = utcnow()
    requeue_before = now - timedelta(seconds=settings.requeue_after_seconds)
    counts = {"resent": 0, "requeued": 0, "failed": 0, "webhooks": 0, "idempotency_purged": 0, "blobs_deleted": 0,
              "positions_repaired": 0}
    with session_scope(runtime.sessions) as session:
        counts["resent"] = _resend_lost_messages(session, runtime, requeue_before)
        # Locked, skipping the rows locked now: a job whose worker is writing its results holds its row (until
        # SUCCEEDED commits) and is not silent; read unlocked, its requeue would overwrite that final state once
        # the lock is released, and the job would run again.
        cutoff = silent_before(session, settings)
        silent = session.scalars(
            select(Job)
            .where(Job.status == RUNNING, Job.heartbeat_at < cutoff)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all() if cutoff is not None else []
        for job in silent:
            if job.attempts >= settings.max_job_attempts:
                fail(session, runtime, job, "WorkerLost", f"the worker went silent; {job.attempts} attempts spent")
                counts["failed"] += 1
            else:
                change_status(session, runtime, job, QUEUED)
                job.worker_id = None
                enqueue_job(session, runtime, job)
                counts["requeued"] += 1
        counts["webhooks"] = _resend_webhooks(session, runtime, requeue_before)
        expired = IdempotencyRecord.created_at < now - timedelta(days=1)
        purged = session.execute(delete(IdempotencyRecord).where(expired))
        counts["idempotency_purged"] = int(getattr(purged, "rowcount", 0) or 0)
    with session_scope(runtime.sessions) as session:  # its own short transaction: it locks the round counters
        counts["positions_repaired"] = positions.repair(session)
    counts["blobs_deleted"] = outbox.purge(runtime)
    if any(counts.values()):
        log.info("reconciled: %s", counts)
    return counts


def _resend_lost_messages(session: Session, runtime: Runtime, before: datetime) -> int:
    long_waiting = (Job.status == QUEUED, Job.enqueued_at < before)
    queues = session.scalars(select(Job.queue).where(*long_waiting).distinct()).all()
    resent = 0
    for queue in queues:
        in_broker = queue_length(runtime, queue)
        if in_broker is None:
            continue
        waiting = session.scalar(select(func.count(Job.id)).where(Job.queue == queue, *long_waiting)) or 0
        missing = min(waiting - in_broker, BATCH)
        if missing <= 0:
            continue
        oldest = select(Job).where(Job.queue == queue, *long_waiting).order_by(*FAIR_ORDER).limit(missing)
        for job in session.scalars(oldest).all():
            enqueue_job(session, runtime, job)
            resent += 1
    return resent


def _resend_webhooks(session: Session, runtime: Runtime, before: datetime) -> int:
    due = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at < before)
        .limit(BATCH)
    ).all()
    for delivery in due:
        delivery.next_attempt_at = utcnow()
        after_commit(session, partial(send, runtime.celery, DELIVER_WEBHOOK, [delivery.id]))
    return len(due)
