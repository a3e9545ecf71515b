from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PresenterDep, RuntimeDep, SessionDep
from api.fetch import FetchLimits, close_all, fetch_photos
from api.pagination import Page, PageDep, paginate
from api.ratelimit import RateLimits, bearer_key
from api.schemas import BINARY, SubjectCreate, SubjectMultipartFields, TrainingCreate, multipart_body
from api.services import jobs, subjects
from api.services.common import Idempotency, checked_webhook_url, is_id, owned
from api.uploads import MultipartForm, UploadedFile, read_multipart
from core.errors import InvalidInput, NotFound, TooLarge, UnsupportedMedia
from core.runtime import Runtime
from core.views import PhotoOut, Presenter, SubjectOut, TrainingOut
from models import Photo, Subject, User

router = APIRouter(tags=["subjects"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def owned_subject(subject_id: str, session: SessionDep, user: CurrentUser) -> Subject:
    return owned(session, Subject, subject_id, user, "subject")


OwnedSubject = Annotated[Subject, Depends(owned_subject)]


class PhotoList(BaseModel):
    data: list[PhotoOut]


PhotoUrl = Annotated[str, Field(min_length=1, max_length=2048)]


class PhotoUrls(BaseModel):
    """Photos the service fetches from public http(s) hosts, at most `MAX_PHOTOS_PER_SUBJECT` (20) a request."""

    urls: list[PhotoUrl] = Field(min_length=1, description="http or https URLs of JPEG, PNG or WebP images")


class SubjectWithTraining(BaseModel):
    subject: SubjectOut
    training: TrainingOut


def invalid(exc: ValidationError) -> InvalidInput:
    errors = [{"field": _field(e["loc"]), "detail": e["msg"]} for e in exc.errors()]
    return InvalidInput("Some fields are invalid.", errors=errors)


def _field(loc: tuple[int | str, ...]) -> str:
    """`name`, `urls[2]`, `a.b`: a list item by its index in brackets, as the per-file errors name them."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


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
PHOTOS_BODY = multipart_body(["files"], {"files": {"type": "array", "items": BINARY}}, PhotoUrls.model_json_schema())


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


@router.post("/v1/subjects/{subject_id}/photos", status_code=201, response_model=PhotoList, openapi_extra=PHOTOS_BODY)
async def upload_photos(
    request: Request, subject: OwnedSubject, session: SessionDep, runtime: RuntimeDep, presenter: PresenterDep
) -> PhotoList:
    """Multipart `files`, or JSON `{"urls": [...]}` that the service fetches (http or https, public addresses
    only, every redirect checked too, each URL within `PHOTO_URL_TIMEOUT_SECONDS`). JPEG, PNG or WebP, each at most
    20 MB and 40 MP, shorter side at least 256 px; all or nothing: one bad file or URL and nothing is stored, and
    the answer lists each (`files[i]`, `urls[i]`) and why. A URL that cannot be fetched (refused address, no
    answer in time, an answer other than 2xx) is a 422; too large a 413, not an image a 415."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        received = uploads = await _fetched(request, subject, session, runtime)
    elif content_type.startswith("multipart/form-data"):
        received = (await _form(request, runtime)).files
        uploads = [f for f in received if f.field == "files"]
    else:
        raise UnsupportedMedia("Send multipart/form-data (files) or application/json (urls).")
    try:
        photos = await run_in_threadpool(subjects.add_photos, session, runtime, subject, uploads)
    finally:
        close_all(received)
    return PhotoList(data=[presenter.photo(p) for p in photos])


async def _fetched(request: Request, subject: Subject, session: Session, runtime: Runtime) -> list[UploadedFile]:
    """The URLs of a JSON body, fetched; refused before any fetch when there are more than a subject takes."""
    try:
        body = PhotoUrls.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid(exc) from exc
    most = runtime.settings.max_photos_per_subject
    if len(body.urls) > most:
        raise TooLarge(f"Too many URLs: at most {most} per request.", errors=[{"field": "urls", "detail": "too many"}])
    subjects.check_room(runtime, subject.photo_count, len(body.urls))
    await run_in_threadpool(session.commit)  # ends the read transaction: no connection is held while fetching
    return await fetch_photos(body.urls, FetchLimits.of(runtime.settings))


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
