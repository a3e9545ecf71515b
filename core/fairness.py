"""Fair ordering of queued jobs across users: round robin.

A user's first waiting job joins the round at the head of the queue, their second the round after it, and so on;
within a round jobs keep the order they came in. So one user's hundred queued jobs interleave with everyone
else's instead of running before them. Workers claim the queued job that comes first in this order (the
broker's messages only say "a job is waiting on this queue"), and a job's queue position counts the jobs before
it in the same order (`core.positions`, from per-round counters).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from models import QUEUED, RUNNING, Job

FAIR_ORDER = (Job.fair_round, Job.created_at, Job.id)


def choose_round(session: Session, job: Job) -> None:
    """The round of a job entering its queue: the head round, or the one after the user's last waiting job. Its
    turn in it is taken apart (`core.positions.take_turn`)."""
    waiting = (Job.queue == job.queue, Job.status == QUEUED, Job.id != job.id)
    head = session.scalar(select(func.min(Job.fair_round)).where(*waiting))
    if head is None:  # nothing waits: start at the round of what runs now, so requeued jobs stay first
        head = session.scalar(select(func.max(Job.fair_round)).where(Job.queue == job.queue, Job.status == RUNNING))
    own = session.scalar(select(func.max(Job.fair_round)).where(*waiting, Job.user_id == job.user_id))
    base = int(head or 0)
    job.fair_round = base if own is None else max(base, int(own) + 1)


def next_in_line(queue: str) -> Select[Any]:
    """The queued job a worker of `queue` takes next, locked; rows another claim holds are skipped."""
    return (
        select(Job)
        .where(Job.queue == queue, Job.status == QUEUED)
        .order_by(*FAIR_ORDER)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
