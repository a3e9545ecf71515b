from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PresenterDep, RuntimeDep, SessionDep
from api.pagination import Page, PageDep, paginate
from api.ratelimit import RateLimits, bearer_key
from api.schemas import BINARY, SubjectCreate, SubjectMultipartFields, TrainingCreate, multipart_body
from api.services import jobs, subjects
from api.services.common import Idempotency, checked_webhook_url, is_id, owned
from api.uploads import MultipartForm, read_multipart
from core.errors import InvalidInput, NotFound, UnsupportedMedia
from core.views import PhotoOut, Presenter, SubjectOut, TrainingOut
from models import Photo, Subject, User

router = APIRouter(tags=["subjects"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def owned_subject(subject_id: str, session: SessionDep, user: CurrentUser) -> Subject:
    return owned(session, Subject, subject_id, user, "subject")


OwnedSubject = Annotated[Subject, Depends(owned_subject)]


class PhotoList(BaseModel):
    data: list[PhotoOut]


class SubjectWithTraining(BaseModel):
    subject: SubjectOut
    training: TrainingOut


def invalid(exc: ValidationError) -> InvalidInput:
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "detail": e["msg"]} for e in exc.errors()]
    return InvalidInput("Some fields are invalid.", errors=errors)


async def _form(request: Request, runtime: RuntimeDep, max_files: int | None = None) -> MultipartForm:
    settings = runtime.settings
    return await read_multipart(
        request, max_file_bytes=settings.max_photo_bytes, max_files=max_files or settings.max_photos_per_subject
    )


SUBJECT_BODY = multipart_body(
    ["name", "class_word", "files"],
    {**SubjectMultipartFields.model_json_schema()["properties"], "files": {"type": "array", "items": BINARY}},
    SubjectCreate.model_json_schema(),
)
FILES_BODY = multipart_body(["files"], {"files": {"type": "array", "items": BINARY}})


@router.post(
    "/v1/subjects", status_code=201, response_model=SubjectOut | SubjectWithTraining, openapi_extra=SUBJECT_BODY
)
async def create_subject(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """JSON `{name, class_word, token?}`, or multipart with `files` (and `train=true` to start a training)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = SubjectCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise invalid(exc) from exc
        subject = await run_in_threadpool(
            subjects.create_subject, session, runtime, user, body.name, body.class_word, body.token
        )
        return Presenter.subject(subject)
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedMedia("Send application/json or multipart/form-data.")
    form = await _form(request, runtime)
    try:
        return await run_in_threadpool(
            _create_with_photos, session, runtime, user, form, idempotency_key, job_limit(request)
        )
    finally:
        form.close()


def job_limit(request: Request) -> Callable[[], None]:
    """The job-creating-request limit of this request's key (the shortcut creates a job only with train=true)."""
    limits: RateLimits | None = request.app.state.rate_limits
    key = bearer_key(request)
    return (lambda: limits.check_job(key)) if limits is not None and key is not None else (lambda: None)


def _create_with_photos(
    session: Any, runtime: Any, user: User, form: MultipartForm, key: str | None, check_job_limit: Callable[[], None]
) -> Any:
    try:
        fields = SubjectMultipartFields.model_validate(form.fields)
    except ValidationError as exc:
        raise invalid(exc) from exc
    if fields.train:
        check_job_limit()
    digests = [hashlib.sha256(upload.read()).hexdigest() for upload in form.files] if fields.train else []
    idempotency = Idempotency(session, user, key if fields.train else None, [form.fields, digests])
    if (replay := idempotency.replay()) is not None:
        return replay
    if fields.train:  # every field is checked before a photo is stored
        checked_webhook_url(fields.webhook_url, allow_private=runtime.settings.allow_private_webhooks)
    subject = subjects.create_subject(session, runtime, user, fields.name, fields.class_word, fields.token)
    subjects.add_photos(session, runtime, subject, [f for f in form.files if f.field == "files"])
    session.refresh(subject)
    if not fields.train:
        return Presenter.subject(subject)
    body = TrainingCreate(subject_ids=[subject.id], webhook_url=fields.webhook_url)
    training = jobs.create_training(session, runtime, user, body)
    presenter = Presenter(session, runtime.storage, runtime.settings)
    view = presenter.job(training)
    assert isinstance(view, TrainingOut)
    out = SubjectWithTraining(subject=Presenter.subject(subject), training=view)
    idempotency.save(201, out)
    return out


@router.get("/v1/subjects", response_model=Page[SubjectOut])
def list_subjects(session: SessionDep, user: CurrentUser, page: PageDep) -> Page[SubjectOut]:
    return paginate(session, select(Subject).where(Subject.user_id == user.id), Subject, page, Presenter.subject)


@router.get("/v1/subjects/{subject_id}", response_model=SubjectOut)
def get_subject(subject: OwnedSubject) -> SubjectOut:
    return Presenter.subject(subject)


@router.delete("/v1/subjects/{subject_id}", status_code=204)
def delete_subject(subject: OwnedSubject, session: SessionDep, runtime: RuntimeDep) -> Response:
    """Deletes the subject, its photos, the trainings and checkpoints made from it, and their files."""
    subjects.delete_subject(session, runtime, subject)
    return Response(status_code=204)


@router.post("/v1/subjects/{subject_id}/photos", status_code=201, response_model=PhotoList, openapi_extra=FILES_BODY)
async def upload_photos(
    request: Request, subject: OwnedSubject, session: SessionDep, runtime: RuntimeDep, presenter: PresenterDep
) -> PhotoList:
    """JPEG, PNG or WebP, each at most 20 MB and 40 MP, shorter side at least 256 px; all or nothing."""
    form = await _form(request, runtime)
    try:
        photos = await run_in_threadpool(
            subjects.add_photos, session, runtime, subject, [f for f in form.files if f.field == "files"]
        )
    finally:
        form.close()
    return PhotoList(data=[presenter.photo(p) for p in photos])


@router.get("/v1/subjects/{subject_id}/photos", response_model=Page[PhotoOut])
def list_photos(subject: OwnedSubject, session: SessionDep, presenter: PresenterDep, page: PageDep) -> Page[PhotoOut]:
    return paginate(session, select(Photo).where(Photo.subject_id == subject.id), Photo, page, presenter.photo)


@router.delete("/v1/subjects/{subject_id}/photos/{photo_id}", status_code=204)
def delete_photo(photo_id: str, subject: OwnedSubject, session: SessionDep, runtime: RuntimeDep) -> Response:
    photo = session.get(Photo, photo_id) if is_id(photo_id) else None
    if photo is None or photo.subject_id != subject.id:
        raise NotFound(f"No photo {photo_id!r} in this subject.")
    subjects.delete_photo(session, runtime, photo)
    return Response(status_code=204)
