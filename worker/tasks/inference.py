"""Generation, edit and LoRA export tasks: everything but the ML, which is in `worker.method`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Task, shared_task
from sqlalchemy import delete
from sqlalchemy.orm import Session

from core import keys
from core.celery_app import EDIT, EXPORT_LORA, GENERATE
from core.generation_options import FORMATS, PNG, ImageFormat, encode
from core.runtime import Runtime
from models import Checkpoint, Edit, Generation, Job, JobImage
from worker import method
from worker.context import job_runtime, runtime_for, worker_id
from worker.lifecycle import Handler, Progress, run_next


def _store_images(
    runtime: Runtime, job: Job, images: list[method.ImageOutput], key_of: Callable[[int], str],
    image_format: ImageFormat = PNG, quality: int | None = None,
) -> Callable[[Session, Job], None]:
    """Stores the images in `image_format` (its extension ends `key_of`'s keys) with its Content-Type."""
    rows = []
    for index, image in enumerate(images):
        key = key_of(index)
        data = encode(image.png, image_format, quality)
        runtime.storage.put(key, data, image_format.content_type)
        rows.append(dict(index=index, storage_key=key, seed=image.seed, width=image.width, height=image.height,
                         size_bytes=len(data)))  # fmt: skip

    def write(session: Session, owned: Job) -> None:
        session.execute(delete(JobImage).where(JobImage.job_id == owned.id))  # a redelivered job rewrites them
        session.add_all(JobImage(job_id=owned.id, **row) for row in rows)

    return write


def _checkpoints(runtime: Runtime, generation: Generation) -> list[tuple[str, bytes, float]]:
    refs = generation.params.get("checkpoints", [])
    with runtime.sessions() as session:
        found = []
        for ref in refs:
            checkpoint = session.get(Checkpoint, ref["id"])
            if checkpoint is None:
                raise LookupError(f"checkpoint {ref['id']} was deleted")
            found.append((checkpoint.id, runtime.storage.get(checkpoint.storage_key), float(ref.get("scale", 1.0))))
        return found


def generate_work(runtime: Runtime) -> Callable[[Generation, Progress], Callable[[Session, Generation], None]]:
    def work(generation: Generation, progress: Progress) -> Callable[[Session, Generation], None]:
        p = generation.params  # a job created before API v1.1 has no scheduler, format or aspect ratio: defaults
        request = method.GenerationInput(
            prompt=p["prompt"], negative_prompt=p.get("negative_prompt"), num_images=int(p.get("num_images", 1)),
            seed=int(p["seed"]), steps=p.get("steps"), guidance_scale=p.get("guidance_scale"),
            width=p.get("width"), height=p.get("height"), scheduler=p.get("scheduler"),
            aspect_ratio=p.get("aspect_ratio"),
        )  # fmt: skip
        images = method.generate(request, _checkpoints(runtime, generation), progress=progress)
        image_format = FORMATS[p.get("output_format") or "png"]
        return _store_images(
            runtime, generation, images,
            lambda i: keys.generation_image(generation.user_id, generation.id, i, image_format.ext),
            image_format, p.get("quality"),
        )  # fmt: skip

    return work


def edit_work(runtime: Runtime) -> Callable[[Edit, Progress], Callable[[Session, Edit], None]]:
    def work(edit: Edit, progress: Progress) -> Callable[[Session, Edit], None]:
        if edit.input_key is None:
            raise ValueError("the edit has no input image")
        p = edit.params
        request = method.EditInput(
            image=runtime.storage.get(edit.input_key), source_prompt=p["source_prompt"],
            target_prompt=p["target_prompt"], steps=p.get("steps"), strength=p.get("strength"), seed=int(p["seed"]),
        )  # fmt: skip
        image = method.edit(request, progress=progress)
        return _store_images(runtime, edit, [image], lambda _: keys.edit_output(edit.user_id, edit.id))

    return work


def inference_handlers(runtime: Runtime) -> dict[str, Handler[Any]]:
    return {"generation": Handler(Generation, generate_work(runtime)), "edit": Handler(Edit, edit_work(runtime))}


@shared_task(name=GENERATE, bind=True)
def generate(self: Task, generation_id: str) -> str:
    """Runs the next inference job in the fair order: a generation, or an edit (their messages are alike)."""
    runtime = job_runtime(runtime_for(self.app))
    return run_next(runtime, "inference", generation_id, worker_id(self.request.hostname), inference_handlers(runtime))


@shared_task(name=EDIT, bind=True)
def edit(self: Task, edit_id: str) -> str:
    runtime = job_runtime(runtime_for(self.app))
    return run_next(runtime, "inference", edit_id, worker_id(self.request.hostname), inference_handlers(runtime))


def export_lora_blob(runtime: Runtime, checkpoint_id: str, rank: int) -> str | None:
    """Write the rank-N LoRA of a checkpoint next to it (once); the API streams it from storage."""
    with runtime.sessions() as session:
        checkpoint = session.get(Checkpoint, checkpoint_id)
        if checkpoint is None:
            return None
        key = keys.checkpoint_lora(checkpoint.user_id, checkpoint.id, rank)
        source = checkpoint.storage_key
    if not runtime.storage.exists(key):
        runtime.storage.put(key, method.export_lora(runtime.storage.get(source), rank))
    runtime.storage.delete(key + keys.PENDING_SUFFIX)
    return key


@shared_task(name=EXPORT_LORA, bind=True)
def export_lora(self: Task, checkpoint_id: str, rank: int) -> str | None:
    return export_lora_blob(job_runtime(runtime_for(self.app)), checkpoint_id, rank)
