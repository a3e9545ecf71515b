"""The public representation of jobs, checkpoints, subjects and photos: what GET returns and what webhooks carry.

Shared by the API (responses) and the workers (webhook payloads), so both always agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.generation_options import format_of_key
from core.positions import Positions
from core.settings import Settings
from core.storage import Storage
from core.throughput import THROUGHPUT
from models import QUEUED, RUNNING, Checkpoint, Job, JobImage, Photo, Subject, Training, utcnow


class Progress(BaseModel):
    step: int
    total: int


class JobError(BaseModel):
    type: str
    detail: str


class ImageOut(BaseModel):
    url: str
    seed: int | None
    width: int
    height: int
    format: str = Field(description="`png`, `jpeg` or `webp`: the generation's `output_format` (edits: `png`).")
    content_type: str = Field(description="The Content-Type `url` serves: `image/png`, `image/jpeg` or `image/webp`.")


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    progress: Progress
    queue_position: int | None
    eta_seconds: float | None
    params: dict[str, Any]
    error: JobError | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TrainingOut(JobOut):
    subject_ids: list[str]
    checkpoint_id: str | None


class GenerationOut(JobOut):
    images: list[ImageOut]


class EditOut(GenerationOut):
    pass


class AdminJobOut(JobOut):
    user_id: str
    attempts: int
    worker_id: str | None


class CheckpointOut(BaseModel):
    id: str
    training_id: str
    subject_ids: list[str]
    base_model: str
    size_bytes: int
    sha256: str
    format_version: int
    created_at: datetime
    download_url: str
    download_expires_at: datetime


class PhotoOut(BaseModel):
    id: str
    width: int
    height: int
    sha256: str
    url: str
    created_at: datetime


class SubjectOut(BaseModel):
    id: str
    name: str
    class_word: str
    token: str
    photo_count: int
    created_at: datetime


class Presenter:
    def __init__(self, session: Session, storage: Storage, settings: Settings) -> None:
        self.session = session
        self.storage = storage
        self.expiry = settings.presign_expiry_seconds
        self.positions = Positions(session)

    def _url(self, key: str, filename: str | None = None) -> str:
        return self.storage.presigned_url(key, self.expiry, filename)

    def queue_position(self, job: Job) -> int | None:
        return self.positions.of(job) if job.status == QUEUED else None

    def eta_seconds(self, job: Job, position: int | None) -> float | None:
        """Running: the remaining steps at the pace since this attempt's first step (loading the model and making
        class images are not steps). Queued: its place in line over the queue's measured throughput
        (`core.throughput`)."""
        if position is not None:
            return THROUGHPUT.queued_eta(self.session, job.queue, position)
        stepped = job.progress_step - job.pace_from_step
        if job.status != RUNNING or job.pace_from_at is None or stepped <= 0 or not job.progress_total:
            return None
        per_step = (utcnow() - job.pace_from_at).total_seconds() / stepped
        return round(per_step * max(job.progress_total - job.progress_step, 0), 1)

    def _common(self, job: Job) -> dict[str, Any]:
        error = JobError(type=job.error_type, detail=job.error_detail or "") if job.error_type else None
        position = self.queue_position(job)
        return {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "progress": Progress(step=job.progress_step, total=job.progress_total),
            "queue_position": position,
            "eta_seconds": self.eta_seconds(job, position),
            "params": dict(job.params),
            "error": error,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }

    def images(self, job: Job) -> list[ImageOut]:
        rows = self.session.scalars(select(JobImage).where(JobImage.job_id == job.id).order_by(JobImage.index))
        return [self.image(row) for row in rows]

    def image(self, row: JobImage) -> ImageOut:
        stored = format_of_key(row.storage_key)  # its extension: no column, and images stored before v1.1 are png
        return ImageOut(url=self._url(row.storage_key), seed=row.seed, width=row.width, height=row.height,
                        format=stored.name, content_type=stored.content_type)  # fmt: skip

    def job(self, job: Job) -> JobOut:
        if isinstance(job, Training):
            checkpoint_id = self.session.scalar(select(Checkpoint.id).where(Checkpoint.training_id == job.id))
            return TrainingOut(**self._common(job), subject_ids=self.subject_ids(job.id), checkpoint_id=checkpoint_id)
        cls = GenerationOut if job.kind == "generation" else EditOut
        return cls(**self._common(job), images=self.images(job))

    def admin_job(self, job: Job) -> AdminJobOut:
        return AdminJobOut(**self._common(job), user_id=job.user_id, attempts=job.attempts, worker_id=job.worker_id)

    def subject_ids(self, training_id: str) -> list[str]:
        from models import training_subjects as ts

        query = select(ts.c.subject_id).where(ts.c.training_id == training_id).order_by(ts.c.position)
        return list(self.session.scalars(query))

    def checkpoint(self, checkpoint: Checkpoint) -> CheckpointOut:
        expires = utcnow() + timedelta(seconds=self.expiry)
        return CheckpointOut(
            id=checkpoint.id,
            training_id=checkpoint.training_id,
            subject_ids=self.subject_ids(checkpoint.training_id),
            base_model=checkpoint.base_model,
            size_bytes=checkpoint.size_bytes,
            sha256=checkpoint.sha256,
            format_version=checkpoint.format_version,
            created_at=checkpoint.created_at,
            download_url=self._url(checkpoint.storage_key, f"{checkpoint.id}.safetensors"),
            download_expires_at=expires.replace(microsecond=0),
        )

    def photo(self, photo: Photo) -> PhotoOut:
        return PhotoOut(
            id=photo.id,
            width=photo.width,
            height=photo.height,
            sha256=photo.sha256,
            url=self._url(photo.storage_key),
            created_at=photo.created_at,
        )

    @staticmethod
    def subject(subject: Subject) -> SubjectOut:
        return SubjectOut.model_validate(subject, from_attributes=True)
