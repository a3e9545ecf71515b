"""What the API returns, as typed pydantic models (the service's `core/views.py` and `api/schemas.py`).

Unknown fields are kept (`extra="allow"`), so a newer service never breaks an older SDK.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Progress(Model):
    step: int
    total: int


class JobError(Model):
    type: str
    detail: str


class Image(Model):
    url: str
    seed: int | None = None
    width: int
    height: int


class Job(Model):
    """What every job carries; `Training`, `Generation` and `Edit` add their own fields."""

    id: str
    kind: str
    status: str
    progress: Progress
    queue_position: int | None = None
    eta_seconds: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True once the job is succeeded, failed or canceled."""
        return self.status in TERMINAL


class Training(Job):
    subject_ids: list[str]
    checkpoint_id: str | None = None


class Generation(Job):
    images: list[Image] = Field(default_factory=list)


class Edit(Generation):
    pass


class AdminJob(Job):
    user_id: str
    attempts: int
    worker_id: str | None = None


class Checkpoint(Model):
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


class Photo(Model):
    id: str
    width: int
    height: int
    sha256: str
    url: str
    created_at: datetime


class Subject(Model):
    id: str
    name: str
    class_word: str
    token: str
    photo_count: int
    created_at: datetime


class SubjectWithTraining(Model):
    """The multipart shortcut with `train=true`: the subject and the training started on it."""

    subject: Subject
    training: Training


class Owner(Model):
    id: str
    name: str


class AdminSubject(Subject):
    owner: Owner
    checkpoint_count: int
    checkpoint_bytes: int
    last_trained_at: datetime | None = None


class WorkerSeen(Model):
    worker_id: str
    last_seen_at: datetime | None = None


class Stats(Model):
    jobs: dict[str, dict[str, int]]  # queue -> status -> count
    storage_bytes: dict[str, int]
    workers: list[WorkerSeen]


class User(Model):
    id: str
    name: str
    role: str
    created_at: datetime


class UserCreated(User):
    api_key: str
    webhook_secret: str


class ApiKey(Model):
    id: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    api_key: str


T = TypeVar("T", bound=BaseModel)


class Page(Model, Generic[T]):
    """One page of a list; pass `next_cursor` as `cursor` for the next (None: this was the last)."""

    data: list[T]
    next_cursor: str | None = None


JOB_MODELS: dict[str, type[Job]] = {"training": Training, "generation": Generation, "edit": Edit}


def parse_job(payload: dict[str, Any]) -> Job:
    """A job JSON as the right model for its `kind` (`Job` for a kind this SDK does not know)."""
    return JOB_MODELS.get(str(payload.get("kind")), Job).model_validate(payload)
