"""The training task: everything but the ML, which is `worker.method.train`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import keys
from core.celery_app import TRAIN
from core.errors import BlobNotFound
from core.runtime import Runtime
from core.storage import Storage
from models import Checkpoint, Photo, Training
from worker import method
from worker.context import job_runtime, runtime_for, worker_id
from worker.lifecycle import Handler, Progress, run_job, run_next


class StorageBlobCache:
    """`method.BlobCache` over storage, under one prefix (the base model's prior images)."""

    def __init__(self, storage: Storage, prefix: str) -> None:
        self.storage, self.prefix = storage, prefix

    def get(self, key: str) -> bytes | None:
        try:
            return self.storage.get(self.prefix + key)
        except BlobNotFound:
            return None

    def put(self, key: str, data: bytes) -> None:
        self.storage.put(self.prefix + key, data)


def checkpoint_id_for(training_id: str) -> str:
    """Derived from the training, so a redelivered training overwrites its own blob instead of orphaning one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"svdiff:checkpoint:{training_id}"))


def _subjects(runtime: Runtime, training: Training) -> list[method.SubjectInput]:
    with runtime.sessions() as session:
        loaded = session.get(Training, training.id)
        if loaded is None:
            return []
        inputs = []
        for subject in loaded.subjects:
            photo_keys = session.scalars(
                select(Photo.storage_key).where(Photo.subject_id == subject.id).order_by(Photo.created_at, Photo.id)
            ).all()
            photos = [runtime.storage.get(key) for key in photo_keys]
            inputs.append(method.SubjectInput(token=subject.token, class_word=subject.class_word, photos=photos))
        return inputs


def _params(runtime: Runtime, training: Training) -> method.TrainParams:
    p = training.params
    return method.TrainParams(
        steps=int(p["steps"]),
        learning_rate=float(p["learning_rate"]),
        prior_preservation=bool(p.get("prior_preservation", True)),
        cut_mix_unmix=bool(p.get("cut_mix_unmix", False)),
        train_text_encoder=bool(p.get("train_text_encoder", True)),
        checkpoint_every=runtime.settings.checkpoint_every_steps,
        seed=int(p.get("seed", 0)),
    )


def train_work(runtime: Runtime) -> Callable[[Training, Progress], Callable[[Session, Training], None]]:
    storage = runtime.storage

    def work(training: Training, progress: Progress) -> Callable[[Session, Training], None]:
        subjects = _subjects(runtime, training)
        if not subjects or any(not s.photos for s in subjects):
            raise ValueError("a subject of this training has no photos any more")
        info = method.base_model_info()
        state_key = keys.training_state(training.id)
        resume = storage.get(state_key) if storage.exists(state_key) else None
        output = method.train(
            subjects,
            _params(runtime, training),
            progress=progress,
            resume_state=resume,
            save_state=lambda state: storage.put(state_key, state),
            prior_cache=StorageBlobCache(storage, keys.prior_prefix(info["fingerprint"])),
        )
        checkpoint_id = checkpoint_id_for(training.id)
        blob_key = keys.checkpoint_shifts(training.user_id, checkpoint_id)
        storage.put(blob_key, output.checkpoint)

        def write(session: Session, job: Training) -> None:
            if session.get(Checkpoint, checkpoint_id) is None:
                session.add(
                    Checkpoint(
                        id=checkpoint_id,
                        user_id=job.user_id,
                        training_id=job.id,
                        base_model=info.get("name", runtime.settings.base_model),
                        storage_key=blob_key,
                        size_bytes=len(output.checkpoint),
                        sha256=hashlib.sha256(output.checkpoint).hexdigest(),
                        format_version=int(output.metadata.get("format_version", 1)),
                        meta=output.metadata,
                    )
                )
            storage.delete(state_key)

        return write

    return work


def discard_outputs(runtime: Runtime) -> Callable[[Training], None]:
    """What a training that ends without results (canceled, failed, deleted) leaves: its resumable state, and
    the checkpoint blob if the method finished (a deleted subject's clean-up ran before they were written)."""

    def discard(training: Training) -> None:
        runtime.storage.delete(keys.training_state(training.id))
        runtime.storage.delete_prefix(keys.checkpoint_prefix(training.user_id, checkpoint_id_for(training.id)))

    return discard


def train_job(runtime: Runtime, training_id: str, worker: str) -> str:
    """The named training (tests and tools); the task runs whichever training is next in the fair order."""
    return run_job(runtime, Training, training_id, worker, train_work(runtime), discard_outputs(runtime))


def training_handlers(runtime: Runtime) -> dict[str, Handler[Any]]:
    return {"training": Handler(Training, train_work(runtime), discard_outputs(runtime))}


@shared_task(name=TRAIN, bind=True)
def train(self: Task, training_id: str) -> str:
    runtime = job_runtime(runtime_for(self.app))
    return run_next(runtime, "training", training_id, worker_id(self.request.hostname), training_handlers(runtime))
