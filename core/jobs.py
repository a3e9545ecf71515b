"""Job state changes. Every change of status goes through `change_status`, which also records the webhook event
and sends its delivery task once the transaction commits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from core import positions
from core.celery_app import DELIVER_WEBHOOK, TASK_OF_KIND, send
from core.db import after_commit
from core.events import job_channel, queue_channel
from core.fairness import choose_round
from core.runtime import Runtime
from core.views import Presenter
from models import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL, Job, WebhookDelivery, new_id, utcnow

ALLOWED = {
    QUEUED: {RUNNING, CANCELED, FAILED},
    RUNNING: {SUCCEEDED, FAILED, CANCELED, QUEUED},  # back to queued: the reconciler takes over a lost job
}


class InvalidTransition(Exception):
    pass


def change_status(
    session: Session,
    runtime: Runtime,
    job: Job,
    status: str,
    *,
    error: tuple[str, str] | None = None,
) -> None:
    if status not in ALLOWED.get(job.status, set()):
        raise InvalidTransition(f"{job.kind} {job.id}: {job.status} -> {status}")
    announce(session, runtime, job, queue_moved=QUEUED in (job.status, status))
    if job.status == QUEUED:
        positions.depart(session, job.queue, job.fair_round)
    elif status == QUEUED:  # taken back from a lost worker: its old turn, ahead of the jobs that joined since
        positions.rejoin(session, job)
    now = utcnow()
    job.status = status
    if status == RUNNING:
        job.started_at = job.started_at or now
    if status in TERMINAL:
        job.finished_at = now
        job.heartbeat_at = now
    if error is not None:
        job.error_type, job.error_detail = error[0], error[1][:2000]
    session.flush()
    record_event(session, runtime, job)


def record_event(session: Session, runtime: Runtime, job: Job) -> None:
    """A webhook delivery for the job's current status, if the job asked for webhooks."""
    if not job.webhook_url:
        return
    data = Presenter(session, runtime.storage, runtime.settings).job(job)
    body: dict[str, Any] = {
        "type": f"{job.kind}.{job.status}",
        "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
        "data": data.model_dump(mode="json"),
    }
    delivery = WebhookDelivery(
        id=f"msg_{uuid.uuid4().hex}",
        user_id=job.user_id,
        job_id=job.id,
        url=job.webhook_url,
        event_type=body["type"],
        payload=json.dumps(body, separators=(",", ":")),
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    session.flush()
    delivery_id = delivery.id
    after_commit(session, lambda: send(runtime.celery, DELIVER_WEBHOOK, [delivery_id]))


def announce(session: Session, runtime: Runtime, job: Job, *, queue_moved: bool = False) -> None:
    """After the commit, tell the live event streams that the job changed (and, when it entered or left its queue,
    that positions there moved)."""
    channels = [job_channel(job.id)] + ([queue_channel(job.queue)] if queue_moved else [])
    after_commit(session, lambda: runtime.events.publish(*channels))


def enqueue_job(session: Session, runtime: Runtime, job: Job, written: Callable[[], object] | None = None) -> None:
    """Send the job's task after the commit; a broker that is down leaves it to the reconciler. A new job takes its
    place in the fair order; one sent again (a lost message, a lost worker) keeps it.

    A new job is written with its round and enqueue time, then takes its turn in the round, last: that locks the
    round's counter until the commit (`core.positions.take_turn`), and every create joining the round waits for
    it, so the fewer statements follow it, the more creates a round takes a second (README "API under load").
    `written`: what else to write once the new job's row is (its subjects), before it takes its turn."""
    new = job.enqueued_at is None
    if new:
        if job.id is None:
            job.id = new_id()
        with session.no_autoflush:  # the pending job is written once, with its round
            choose_round(session, job)
    job.enqueued_at = utcnow()
    session.flush()
    if new:
        if written is not None:
            written()
        positions.take_turn(session, job)
        announce(session, runtime, job, queue_moved=True)  # a newcomer can go ahead of others' later rounds
    name, args, task_id = TASK_OF_KIND[job.kind], [job.id], job.task_id
    after_commit(session, lambda: send(runtime.celery, name, args, task_id=task_id))


def fail(session: Session, runtime: Runtime, job: Job, error_type: str, detail: str) -> None:
    change_status(session, runtime, job, FAILED, error=(error_type, detail))


def succeed(session: Session, runtime: Runtime, job: Job) -> None:
    job.progress_step = job.progress_total
    change_status(session, runtime, job, SUCCEEDED)
