"""The public representation of jobs, checkpoints, subjects and photos: what GET returns and what webhooks carry.

Shared by the API (responses) and the workers (webhook payloads), so both always agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from models import QUEUED, RUNNING, SUCCEEDED, Checkpoint, Job, JobImage, Photo, Subject, Training, utcnow
from models import training_subjects as ts


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


@dataclass(frozen=True)
class Prefetched:
    """Rows a page of jobs needs, read at once for all of them (`Presenter.prefetch`)."""

    job_ids: frozenset[str]
    images: dict[str, list[JobImage]]  # job id -> its images, by index
    subject_ids: dict[str, list[str]]  # training id -> its subjects, in order
    checkpoint_ids: dict[str, str]  # training id -> its checkpoint

    @classmethod
    def read(cls, session: Session, jobs: Sequence[Job]) -> Prefetched:
        outputs = [job.id for job in jobs if not isinstance(job, Training) and job.status == SUCCEEDED]
        trainings = [job.id for job in jobs if isinstance(job, Training)]
        images: dict[str, list[JobImage]] = defaultdict(list)
        subjects: dict[str, list[str]] = defaultdict(list)
        checkpoints: dict[str, str] = {}
        if outputs:
            query = select(JobImage).where(JobImage.job_id.in_(outputs)).order_by(JobImage.job_id, JobImage.index)
            for image in session.scalars(query):
                images[image.job_id].append(image)
        if trainings:
            rows = session.execute(select(ts.c.training_id, ts.c.subject_id).where(ts.c.training_id.in_(trainings))
                                   .order_by(ts.c.training_id, ts.c.position))  # fmt: skip
            for training_id, subject_id in rows:
                subjects[training_id].append(subject_id)
            found = select(Checkpoint.training_id, Checkpoint.id).where(Checkpoint.training_id.in_(trainings))
            checkpoints = {training_id: checkpoint_id for training_id, checkpoint_id in session.execute(found)}
        return cls(frozenset(job.id for job in jobs), dict(images), dict(subjects), checkpoints)


class Presenter:
    def __init__(self, session: Session, storage: Storage, settings: Settings) -> None:
        self.session = session
        self.storage = storage
        self.expiry = settings.presign_expiry_seconds
        self.positions = Positions(session)
        self._prefetched: Prefetched | None = None

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

    def prefetch(self, jobs: Sequence[Job]) -> None:
        """Reads what rendering `jobs` needs (images; trainings' subjects and checkpoints) in one query each, not
        one per job: a list page of 100 was 100 more queries."""
        self._prefetched = Prefetched.read(self.session, jobs)

    def created(self, job: Job, subject_ids: Sequence[str] = ()) -> JobOut:
        """A job this request created (a training on `subject_ids`): it has no images or checkpoint yet, so
        they are not read."""
        subjects = {job.id: list(subject_ids)} if isinstance(job, Training) else {}
        self._prefetched = Prefetched(frozenset({job.id}), {}, subjects, {})
        return self.job(job)

    def images(self, job: Job) -> list[ImageOut]:
        """A job's images. Only a succeeded job has any: a worker writes them in the transaction that makes the
        job succeeded (`worker.lifecycle`), so the others' (queued ones polled for their place) are not read."""
        if job.status != SUCCEEDED:
            return []
        if self._prefetched is not None and job.id in self._prefetched.job_ids:
            rows: Iterable[JobImage] = self._prefetched.images.get(job.id, [])
        else:
            rows = self.session.scalars(select(JobImage).where(JobImage.job_id == job.id).order_by(JobImage.index))
        return [self.image(row) for row in rows]

    def image(self, row: JobImage) -> ImageOut:
        stored = format_of_key(row.storage_key)  # its extension: no column, and images stored before v1.1 are png
        return ImageOut(url=self._url(row.storage_key), seed=row.seed, width=row.width, height=row.height,
                        format=stored.name, content_type=stored.content_type)  # fmt: skip

    def job(self, job: Job) -> JobOut:
        if isinstance(job, Training):
            return TrainingOut(**self._common(job), subject_ids=self.subject_ids(job.id),
                               checkpoint_id=self.checkpoint_id(job.id))  # fmt: skip
        cls = GenerationOut if job.kind == "generation" else EditOut
        return cls(**self._common(job), images=self.images(job))

    def admin_job(self, job: Job) -> AdminJobOut:
        return AdminJobOut(**self._common(job), user_id=job.user_id, attempts=job.attempts, worker_id=job.worker_id)

    def checkpoint_id(self, training_id: str) -> str | None:
        if self._prefetched is not None and training_id in self._prefetched.job_ids:
            return self._prefetched.checkpoint_ids.get(training_id)
        return self.session.scalar(select(Checkpoint.id).where(Checkpoint.training_id == training_id))

    def subject_ids(self, training_id: str) -> list[str]:
        if self._prefetched is not None and training_id in self._prefetched.job_ids:
            return list(self._prefetched.subject_ids.get(training_id, []))
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
