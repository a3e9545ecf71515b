from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from api.deps import AdminUser, PresenterDep, SessionDep
from api.pagination import Page, PageDep, paginate
from api.services.common import is_id
from core.views import AdminJobOut, SubjectOut
from models import STATUSES, Checkpoint, Job, JobImage, Photo, Subject, User, training_subjects

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Status = Literal["queued", "running", "succeeded", "failed", "canceled"]
Kind = Literal["training", "generation", "edit"]


class Owner(BaseModel):
    id: str
    name: str


class AdminSubjectOut(SubjectOut):
    owner: Owner
    checkpoint_count: int
    checkpoint_bytes: int
    last_trained_at: datetime | None


class WorkerSeen(BaseModel):
    worker_id: str
    last_seen_at: datetime | None


class Stats(BaseModel):
    jobs: dict[str, dict[str, int]]  # queue -> status -> count
    storage_bytes: dict[str, int]
    workers: list[WorkerSeen]


def _checkpoint_totals(session: Session, subject_ids: list[str]) -> dict[str, tuple[int, int, Any]]:
    ts = training_subjects
    query = (
        select(
            ts.c.subject_id,
            func.count(Checkpoint.id),
            func.sum(Checkpoint.size_bytes),
            func.max(Checkpoint.created_at),
        )
        .join(Checkpoint, Checkpoint.training_id == ts.c.training_id)
        .where(ts.c.subject_id.in_(subject_ids))
        .group_by(ts.c.subject_id)
    )
    return {row[0]: (row[1], int(row[2] or 0), row[3]) for row in session.execute(query)}


@router.get("/subjects", response_model=Page[AdminSubjectOut])
def subjects(
    session: SessionDep, _admin: AdminUser, page: PageDep, user_id: Annotated[str | None, Query()] = None
) -> Page[AdminSubjectOut]:
    """Every user's subjects with their owner and checkpoint totals."""
    query = select(Subject)
    if user_id is not None:
        query = query.where(Subject.user_id == user_id if is_id(user_id) else false())  # not an id: no one's
    result = paginate(session, query, Subject, page, lambda s: s)
    subjects: list[Subject] = result.data  # type: ignore[assignment]
    owners = {u.id: u for u in session.scalars(select(User).where(User.id.in_({s.user_id for s in subjects})))}
    totals = _checkpoint_totals(session, [s.id for s in subjects])
    data = []
    for s in subjects:
        count, size, last = totals.get(s.id, (0, 0, None))
        owner = Owner(id=s.user_id, name=owners[s.user_id].name)
        base = SubjectOut.model_validate(s, from_attributes=True).model_dump()
        data.append(
            AdminSubjectOut(**base, owner=owner, checkpoint_count=count, checkpoint_bytes=size, last_trained_at=last)
        )
    return Page[AdminSubjectOut](data=data, next_cursor=result.next_cursor)


@router.get("/jobs", response_model=Page[AdminJobOut])
def jobs(
    session: SessionDep,
    _admin: AdminUser,
    page: PageDep,
    presenter: PresenterDep,
    status: Annotated[Status | None, Query()] = None,
    kind: Annotated[Kind | None, Query()] = None,
) -> Page[AdminJobOut]:
    query = select(Job)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return paginate(session, query, Job, page, presenter.admin_job)


@router.get("/stats", response_model=Stats)
def stats(session: SessionDep, _admin: AdminUser) -> Stats:
    """Jobs by queue and status, bytes stored, and when each worker was last seen."""
    jobs: dict[str, dict[str, int]] = {}
    for queue, status, count in session.execute(
        select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status)
    ):
        jobs.setdefault(queue, dict.fromkeys(STATUSES, 0))[status] = count
    sizes = {
        "photos": session.scalar(select(func.coalesce(func.sum(Photo.size_bytes), 0))),
        "checkpoints": session.scalar(select(func.coalesce(func.sum(Checkpoint.size_bytes), 0))),
        "images": session.scalar(select(func.coalesce(func.sum(JobImage.size_bytes), 0))),
    }
    storage = {name: int(value or 0) for name, value in sizes.items()}
    storage["total"] = sum(storage.values())
    seen = (
        select(Job.worker_id, func.max(Job.heartbeat_at).label("seen"))
        .where(Job.worker_id.is_not(None))
        .group_by(Job.worker_id)
        .order_by(func.max(Job.heartbeat_at).desc())
        .limit(100)
    )
    workers = [WorkerSeen(worker_id=str(w), last_seen_at=t) for w, t in session.execute(seen)]
    return Stats(jobs=jobs, storage_bytes=storage, workers=workers)
