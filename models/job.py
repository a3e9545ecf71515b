"""Jobs: trainings, generations and edits share one table (`kind`) so queues, admin lists and the reconciler
see every job alike; the database row is the source of truth for a job's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedMixin, IdMixin
from models.subject import Subject

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)
KINDS = ("training", "generation", "edit")
QUEUE_OF_KIND = {"training": "training", "generation": "inference", "edit": "inference"}

training_subjects = Table(
    "training_subjects",
    Base.metadata,
    Column("training_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("subject_id", ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True, index=True),
    Column("position", Integer, nullable=False, default=0),
)


class Job(IdMixin, CreatedMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_queue_status_created", "queue", "status", "created_at"),
        Index("ix_jobs_user_kind_created", "user_id", "kind", "created_at"),
        Index("ix_jobs_queue_enqueued", "queue", "enqueued_at"),  # the reconciler: queued long ago
        Index("ix_jobs_queue_status_fair", "queue", "status", "fair_round", "created_at", "id"),  # the fair order
        Index("ix_jobs_user_queue_status_round", "user_id", "queue", "status", "fair_round"),  # a user's last round
        Index("ix_jobs_queue_finished", "queue", "finished_at"),  # a queue's measured throughput
    )
    __mapper_args__ = {"polymorphic_on": "kind"}  # noqa: RUF012

    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    queue: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    input_key: Mapped[str | None] = mapped_column(String(300))  # the uploaded image of an edit

    progress_step: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    # The first step this attempt reported, and when: the running ETA's pace, without the attempt's preparation.
    pace_from_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pace_from_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_detail: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(36))
    heartbeat_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    # Round-robin across users: a user's n-th waiting job runs in the n-th round from the head of the queue.
    fair_round: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    round_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # its turn within the round
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    images: Mapped[list[JobImage]] = relationship(order_by=lambda: JobImage.index, viewonly=True)


class Training(Job):
    __mapper_args__ = {"polymorphic_identity": "training"}  # noqa: RUF012

    subjects: Mapped[list[Subject]] = relationship(
        secondary=training_subjects, order_by=training_subjects.c.position, viewonly=True
    )
    checkpoint: Mapped[Checkpoint | None] = relationship(back_populates="training", uselist=False, viewonly=True)


class Generation(Job):
    __mapper_args__ = {"polymorphic_identity": "generation"}  # noqa: RUF012


class Edit(Job):
    __mapper_args__ = {"polymorphic_identity": "edit"}  # noqa: RUF012


class JobImage(IdMixin, CreatedMixin, Base):
    """An output image of a generation or an edit."""

    __tablename__ = "job_images"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(300))
    seed: Mapped[int | None] = mapped_column(BigInteger)  # up to 2^32 - 1 + index
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)


class Checkpoint(IdMixin, CreatedMixin, Base):
    __tablename__ = "checkpoints"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    training_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    base_model: Mapped[str] = mapped_column(String(200))
    storage_key: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    format_version: Mapped[int] = mapped_column(Integer, default=1)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    training: Mapped[Training] = relationship(back_populates="checkpoint")
