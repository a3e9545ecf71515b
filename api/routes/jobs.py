"""Trainings, generations and edits: create (202, idempotent), read, cancel."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PresenterDep, RuntimeDep, SessionDep
from api.pagination import Page, PageDep, paginate
from api.routes.subjects import invalid
from api.schemas import BINARY, EditFields, GenerationCreate, TrainingCreate, multipart_body
from api.services import jobs
from api.services.common import Idempotency, owned
from api.uploads import MultipartForm, read_multipart
from core.errors import InvalidInput
from core.views import EditOut, GenerationOut, JobOut, Presenter, TrainingOut
from models import Edit, Generation, Job, Training, User

router = APIRouter()
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, description="Same key and body within 24 h: same answer."),
]


def _owned(kind: type[Job], name: str) -> Any:
    def dependency(job_id: str, session: SessionDep, user: CurrentUser) -> Job:
        return owned(session, kind, job_id, user, name)

    return Depends(dependency)


OwnedTraining = Annotated[Training, _owned(Training, "training")]
OwnedGeneration = Annotated[Generation, _owned(Generation, "generation")]
OwnedEdit = Annotated[Edit, _owned(Edit, "edit")]


def _list(session: SessionDep, user: User, kind: type[Job], page: PageDep, presenter: Presenter) -> Page[Any]:
    query = select(kind).where(kind.user_id == user.id)
    return paginate(session, query, kind, page, presenter.job, presenter.prefetch)


@router.post("/v1/trainings", status_code=202, response_model=TrainingOut, tags=["trainings"])
def create_training(
    body: TrainingCreate, session: SessionDep, runtime: RuntimeDep, user: CurrentUser, presenter: PresenterDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:  # fmt: skip
    """Train spectral shifts on 1 to 3 subjects. A subject without photos answers 409."""
    idempotency = Idempotency(session, user, idempotency_key, body.model_dump())
    if (replay := idempotency.replay()) is not None:
        return replay
    presenter.positions.read("training")  # before the job takes its turn (core.jobs.enqueue_job)
    out = presenter.created(jobs.create_training(session, runtime, user, body), body.subject_ids)
    idempotency.save(202, out)
    return out


@router.get("/v1/trainings", response_model=Page[TrainingOut], tags=["trainings"])
def list_trainings(session: SessionDep, user: CurrentUser, page: PageDep, presenter: PresenterDep) -> Page[Any]:
    return _list(session, user, Training, page, presenter)


@router.get("/v1/trainings/{job_id}", response_model=TrainingOut, tags=["trainings"])
def get_training(training: OwnedTraining, presenter: PresenterDep) -> JobOut:
    return presenter.job(training)


@router.post("/v1/trainings/{job_id}/cancel", status_code=202, response_model=TrainingOut, tags=["trainings"])
def cancel_training(
    training: OwnedTraining, session: SessionDep, runtime: RuntimeDep, presenter: PresenterDep
) -> JobOut:
    """A queued training is canceled at once; a running one stops at its next step. A finished one: 409."""
    return presenter.job(jobs.cancel(session, runtime, training))


@router.post("/v1/generations", status_code=202, response_model=GenerationOut, tags=["generations"])
def create_generation(
    body: GenerationCreate, session: SessionDep, runtime: RuntimeDep, user: CurrentUser, presenter: PresenterDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:  # fmt: skip
    """Generate 1 to 4 images; prompts name subjects by their `token`. Several checkpoints combine their shifts.
    Options: the sampler (`scheduler`), the stored format (`output_format`, `quality`) and `aspect_ratio` instead of
    `width` and `height`."""
    idempotency = Idempotency(session, user, idempotency_key, body.request_payload())
    if (replay := idempotency.replay()) is not None:
        return replay
    presenter.positions.read("inference")  # before the job takes its turn (core.jobs.enqueue_job)
    out = presenter.created(jobs.create_generation(session, runtime, user, body))
    idempotency.save(202, out)
    return out


@router.get("/v1/generations", response_model=Page[GenerationOut], tags=["generations"])
def list_generations(session: SessionDep, user: CurrentUser, page: PageDep, presenter: PresenterDep) -> Page[Any]:
    return _list(session, user, Generation, page, presenter)


@router.get("/v1/generations/{job_id}", response_model=GenerationOut, tags=["generations"])
def get_generation(generation: OwnedGeneration, presenter: PresenterDep) -> JobOut:
    return presenter.job(generation)


@router.post("/v1/generations/{job_id}/cancel", status_code=202, response_model=GenerationOut, tags=["generations"])
def cancel_generation(
    generation: OwnedGeneration, session: SessionDep, runtime: RuntimeDep, presenter: PresenterDep
) -> JobOut:
    return presenter.job(jobs.cancel(session, runtime, generation))


EDIT_BODY = multipart_body(
    ["file", "source_prompt", "target_prompt"], {"file": BINARY, **EditFields.model_json_schema()["properties"]}
)


@router.post("/v1/edits", status_code=202, response_model=EditOut, tags=["edits"], openapi_extra=EDIT_BODY)
async def create_edit(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Single-image editing: fine-tune on the image, invert it, regenerate it with the target prompt."""
    form = await read_multipart(request, max_file_bytes=runtime.settings.max_photo_bytes, max_files=1)
    try:
        return await run_in_threadpool(_create_edit, session, runtime, user, form, idempotency_key)
    finally:
        form.close()


def _create_edit(session: Any, runtime: Any, user: User, form: MultipartForm, key: str | None) -> Any:
    try:
        fields = EditFields.model_validate(form.fields)
    except ValidationError as exc:
        raise invalid(exc) from exc
    uploads = [f for f in form.files if f.field == "file"]
    if len(uploads) != 1:
        raise InvalidInput("Send exactly one image.", errors=[{"field": "file", "detail": "exactly one file"}])
    idempotency = Idempotency(session, user, key, [form.fields, hashlib.sha256(uploads[0].read()).hexdigest()])
    if (replay := idempotency.replay()) is not None:
        return replay
    presenter = Presenter(session, runtime.storage, runtime.settings)
    presenter.positions.read("inference")  # before the job takes its turn (core.jobs.enqueue_job)
    out = presenter.created(jobs.create_edit(session, runtime, user, fields, uploads[0]))
    idempotency.save(202, out)
    return out


@router.get("/v1/edits/{job_id}", response_model=EditOut, tags=["edits"])
def get_edit(edit: OwnedEdit, presenter: PresenterDep) -> JobOut:
    return presenter.job(edit)
