"""Creating and canceling jobs. A job row is committed first; its task is sent after the commit."""

from __future__ import annotations

import secrets
from functools import partial

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from api.images import clean_image
from api.schemas import EditFields, GenerationCreate, TrainingCreate
from api.services.common import checked_webhook_url, owned
from api.services.subjects import check_uploads, forget_blobs
from api.uploads import UploadedFile
from core import keys
from core.db import on_rollback
from core.errors import Conflict, InvalidInput, TooManyActiveJobs
from core.jobs import change_status, enqueue_job
from core.runtime import Runtime
from models import CANCELED, QUEUED, RUNNING, Checkpoint, Edit, Generation, Job, Subject, Training, User, new_id
from models import training_subjects as ts


def check_active_jobs(session: Session, runtime: Runtime, user: User, queue: str) -> None:
    """429 when the user already has the most queued and running jobs this queue allows; the user's row is
    locked first, so two creates at once cannot both pass the count."""
    limit = runtime.settings.max_active_jobs_per_user.get(queue)
    if limit is None:
        return
    session.get(User, user.id, with_for_update=True)
    active = session.scalar(select(func.count(Job.id)).where(
        Job.user_id == user.id, Job.queue == queue, Job.status.in_((QUEUED, RUNNING))))  # fmt: skip
    if (active or 0) >= limit:
        raise TooManyActiveJobs(queue, limit)


def create_training(session: Session, runtime: Runtime, user: User, body: TrainingCreate) -> Training:
    settings = runtime.settings
    subjects = [owned(session, Subject, sid, user) for sid in body.subject_ids]
    for subject in subjects:
        if subject.photo_count == 0:
            raise Conflict(f"Subject {subject.id!r} has no photos yet.")
    steps = body.steps or settings.default_training_steps
    if steps > settings.max_training_steps:
        limit = f"at most {settings.max_training_steps}"
        raise InvalidInput("Too many steps.", errors=[{"field": "steps", "detail": limit}])
    params = {
        "steps": steps,
        "learning_rate": body.learning_rate or settings.default_learning_rate,
        "prior_preservation": body.prior_preservation,
        "cut_mix_unmix": len(subjects) > 1 if body.cut_mix_unmix is None else body.cut_mix_unmix,
        "train_text_encoder": body.train_text_encoder,
    }
    webhook = checked_webhook_url(body.webhook_url, allow_private=settings.allow_private_webhooks)
    check_active_jobs(session, runtime, user, "training")
    job = Training(id=new_id(), user_id=user.id, queue="training", params=params, webhook_url=webhook,
                   task_id=new_id(), progress_total=steps)  # fmt: skip
    session.add(job)
    rows = [{"training_id": job.id, "subject_id": s.id, "position": i} for i, s in enumerate(subjects)]
    enqueue_job(session, runtime, job, written=lambda: session.execute(insert(ts), rows))  # writes the job
    return job


def create_generation(session: Session, runtime: Runtime, user: User, body: GenerationCreate) -> Generation:
    for ref in body.checkpoints:
        owned(session, Checkpoint, ref.id, user, "checkpoint")
    params = body.model_dump(exclude={"webhook_url"})
    params["seed"] = body.seed if body.seed is not None else secrets.randbelow(2**31)
    params["quality"] = body.effective_quality()
    webhook = checked_webhook_url(body.webhook_url, allow_private=runtime.settings.allow_private_webhooks)
    check_active_jobs(session, runtime, user, "inference")
    job = Generation(id=new_id(), user_id=user.id, queue="inference", params=params, webhook_url=webhook,
                     task_id=new_id(), progress_total=body.steps or 0)  # fmt: skip
    session.add(job)
    enqueue_job(session, runtime, job)  # writes the job
    return job


def create_edit(session: Session, runtime: Runtime, user: User, fields: EditFields, upload: UploadedFile) -> Edit:
    settings = runtime.settings
    check_uploads([upload], runtime)
    webhook = checked_webhook_url(fields.webhook_url, allow_private=settings.allow_private_webhooks)
    check_active_jobs(session, runtime, user, "inference")
    image = clean_image(upload.read(), max_pixels=settings.max_photo_pixels, min_side=settings.min_photo_side)
    params = fields.model_dump(exclude={"webhook_url"})
    params["seed"] = fields.seed if fields.seed is not None else secrets.randbelow(2**31)
    job = Edit(id=new_id(), user_id=user.id, queue="inference", params=params, webhook_url=webhook,
               task_id=new_id(), progress_total=fields.steps or 0)  # fmt: skip
    job.input_key = keys.edit_input(user.id, job.id, image.ext)
    runtime.storage.put(job.input_key, image.data, image.content_type)
    on_rollback(session, partial(forget_blobs, runtime, [job.input_key]))
    session.add(job)
    enqueue_job(session, runtime, job)  # writes the job
    return job


def cancel(session: Session, runtime: Runtime, job: Job) -> Job:
    """A queued job is canceled at once; a running one is asked to stop and stops at its next step."""
    # Read the status under the row lock a worker's claim takes too: else a claim committed meanwhile would be
    # overwritten (running -> canceled) by a status read before it.
    session.refresh(job, with_for_update=True)
    if job.status == QUEUED:
        change_status(session, runtime, job, CANCELED)
    elif job.status == RUNNING:
        job.cancel_requested = True
        session.flush()
    else:
        raise Conflict(f"This {job.kind} has already {job.status}.")
    return job
