"""The database schema (SQLAlchemy 2 ORM), shared by the API and the workers; `migrations/` is its history."""

from models.base import Base, new_id, utcnow
from models.job import (
    ACTIVE,
    CANCELED,
    FAILED,
    KINDS,
    QUEUE_OF_KIND,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TERMINAL,
    Checkpoint,
    Edit,
    Generation,
    Job,
    JobImage,
    Training,
    training_subjects,
)
from models.outbox import BlobDeletion
from models.queue_round import QueueRound
from models.subject import Photo, Subject
from models.user import ApiKey, User
from models.webhook import IdempotencyRecord, WebhookDelivery

__all__ = [
    "ACTIVE",
    "CANCELED",
    "FAILED",
    "KINDS",
    "QUEUED",
    "QUEUE_OF_KIND",
    "RUNNING",
    "STATUSES",
    "SUCCEEDED",
    "TERMINAL",
    "ApiKey",
    "Base",
    "BlobDeletion",
    "Checkpoint",
    "Edit",
    "Generation",
    "IdempotencyRecord",
    "Job",
    "JobImage",
    "Photo",
    "QueueRound",
    "Subject",
    "Training",
    "User",
    "WebhookDelivery",
    "new_id",
    "training_subjects",
    "utcnow",
]
