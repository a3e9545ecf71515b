"""Every endpoint as a `Call`: path, body and how to read the answer. The sync and async resources only send them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from svdiff_client._base import Call, compact, idempotency_headers, segment
from svdiff_client._files import PhotoInput, multipart_files, to_upload
from svdiff_client.models import (
    AdminJob,
    AdminSubject,
    ApiKey,
    ApiKeyCreated,
    Checkpoint,
    Edit,
    Generation,
    Page,
    Photo,
    Stats,
    Subject,
    SubjectWithTraining,
    Training,
    User,
    UserCreated,
)

M = TypeVar("M", bound=BaseModel)
CheckpointSpec = str | Checkpoint | Training | tuple[str | Checkpoint | Training, float] | dict[str, Any]


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def page(cls: type[M]) -> Callable[[httpx.Response], Page[M]]:
    adapter = TypeAdapter(Page[cls])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> Page[M]:
        return adapter.validate_json(response.content)

    return parse


def listed(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    """`{data: [...]}` answers that are not pages (a photo upload, the keys of a user)."""
    adapter = TypeAdapter(list[cls])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> list[M]:
        return adapter.validate_python(response.json()["data"])

    return parse


def nothing(response: httpx.Response) -> None:
    return None


def raw(response: httpx.Response) -> httpx.Response:
    return response


def page_params(limit: int | None, cursor: str | None, **filters: Any) -> dict[str, Any]:
    return compact(limit=limit, cursor=cursor, **filters)


def as_list(photos: PhotoInput | Iterable[PhotoInput]) -> list[PhotoInput]:
    """One photo or several (a single path or bytes is not taken for a sequence of them)."""
    if isinstance(photos, str | bytes | bytearray | memoryview | os.PathLike) or not isinstance(photos, Iterable):
        return [photos]
    return list(photos)


# users


def me() -> Call[User]:
    return Call("GET", "/v1/me", model(User))


def users_create(name: str, role: str) -> Call[UserCreated]:
    return Call("POST", "/v1/users", model(UserCreated), json={"name": name, "role": role})


def users_list(limit: int | None, cursor: str | None) -> Call[Page[User]]:
    return Call("GET", "/v1/users", page(User), params=page_params(limit, cursor))


def keys_path(user: object) -> str:
    return f"/v1/users/{segment(user)}/keys"


def keys_list(user: object) -> Call[list[ApiKey]]:
    return Call("GET", keys_path(user), listed(ApiKey))


def keys_create(user: object) -> Call[ApiKeyCreated]:
    return Call("POST", keys_path(user), model(ApiKeyCreated))


def keys_rotate(key: object, user: object) -> Call[ApiKeyCreated]:
    return Call("POST", f"{keys_path(user)}/{segment(key)}/rotate", model(ApiKeyCreated))


def keys_revoke(key: object, user: object) -> Call[None]:
    return Call("DELETE", f"{keys_path(user)}/{segment(key)}", nothing)


# subjects and photos


def subjects_create(name: str, class_word: str, token: str | None) -> Call[Subject]:
    body = compact(name=name, class_word=class_word, token=token)
    return Call("POST", "/v1/subjects", model(Subject), json=body)


def parse_subject_or_pair(response: httpx.Response) -> Subject | SubjectWithTraining:
    body = response.json()
    if isinstance(body, dict) and "training" in body:
        return SubjectWithTraining.model_validate(body)
    return Subject.model_validate(body)


def subjects_create_with_photos(
    name: str, class_word: str, photos: Iterable[PhotoInput], train: bool, token: str | None,
    webhook_url: str | None, idempotency_key: str | None,
) -> Call[Subject | SubjectWithTraining]:  # fmt: skip
    fields = compact(name=name, class_word=class_word, token=token, webhook_url=webhook_url)
    if train:
        fields["train"] = "true"
    headers = idempotency_headers(idempotency_key) if train else {}  # only a training makes it a job creation
    files = multipart_files("files", as_list(photos))
    return Call("POST", "/v1/subjects", parse_subject_or_pair, data=fields, files=files, headers=headers)


def subjects_list(limit: int | None, cursor: str | None) -> Call[Page[Subject]]:
    return Call("GET", "/v1/subjects", page(Subject), params=page_params(limit, cursor))


def subjects_get(subject: object) -> Call[Subject]:
    return Call("GET", f"/v1/subjects/{segment(subject)}", model(Subject))


def subjects_delete(subject: object) -> Call[None]:
    return Call("DELETE", f"/v1/subjects/{segment(subject)}", nothing)


def photos_upload(subject: object, photos: Iterable[PhotoInput]) -> Call[list[Photo]]:
    files = multipart_files("files", as_list(photos))
    return Call("POST", f"/v1/subjects/{segment(subject)}/photos", listed(Photo), files=files)


def photos_from_urls(subject: object, urls: Sequence[str]) -> Call[list[Photo]]:
    if isinstance(urls, str):
        urls = [urls]
    return Call("POST", f"/v1/subjects/{segment(subject)}/photos", listed(Photo), json={"urls": list(urls)})


def photos_list(subject: object, limit: int | None, cursor: str | None) -> Call[Page[Photo]]:
    return Call("GET", f"/v1/subjects/{segment(subject)}/photos", page(Photo), params=page_params(limit, cursor))


def photos_delete(subject: object, photo: object) -> Call[None]:
    return Call("DELETE", f"/v1/subjects/{segment(subject)}/photos/{segment(photo)}", nothing)


# trainings


def trainings_create(
    subject_ids: Sequence[str | Subject], idempotency_key: str | None, **options: Any
) -> Call[Training]:
    if isinstance(subject_ids, str):
        subject_ids = [subject_ids]
    body = {"subject_ids": [getattr(s, "id", s) for s in subject_ids], **compact(**options)}
    return Call("POST", "/v1/trainings", model(Training), json=body, headers=idempotency_headers(idempotency_key))


def job_get(path: str, cls: type[M]) -> Call[M]:
    return Call("GET", path, model(cls))


def job_list(path: str, cls: type[M], limit: int | None, cursor: str | None) -> Call[Page[M]]:
    return Call("GET", path, page(cls), params=page_params(limit, cursor))


def job_cancel(path: str, cls: type[M]) -> Call[M]:
    return Call("POST", f"{path}/cancel", model(cls))


# generations and edits


def checkpoint_id(ref: str | Checkpoint | Training) -> str:
    """A checkpoint's id, given itself, its id, or the training that made it."""
    if isinstance(ref, Training):
        if ref.checkpoint_id is None:
            raise ValueError(f"training {ref.id} has no checkpoint (status {ref.status})")
        return ref.checkpoint_id
    return ref.id if isinstance(ref, Checkpoint) else ref


def checkpoint_ref(spec: CheckpointSpec) -> dict[str, Any]:
    """An id, a Checkpoint or the Training that made it (scale 1.0, the service default), one of those with a
    scale as a pair, or a {id, scale} dict."""
    if isinstance(spec, dict):
        return dict(spec)
    if isinstance(spec, tuple):
        ref, scale = spec
        return {"id": checkpoint_id(ref), "scale": float(scale)}
    return {"id": checkpoint_id(spec)}


def generations_create(
    prompt: str, checkpoints: Sequence[CheckpointSpec], idempotency_key: str | None, extra_body: dict[str, Any] | None,
    **options: Any,
) -> Call[Generation]:  # fmt: skip
    body = {"prompt": prompt, "checkpoints": [checkpoint_ref(c) for c in checkpoints], **compact(**options)}
    body.update(extra_body or {})
    headers = idempotency_headers(idempotency_key)
    return Call("POST", "/v1/generations", model(Generation), json=body, headers=headers)


def edits_create(file: PhotoInput, idempotency_key: str | None, **fields: Any) -> Call[Edit]:
    data = {name: str(value) for name, value in compact(**fields).items()}
    files = [("file", to_upload(file, 0))]
    headers = idempotency_headers(idempotency_key)
    return Call("POST", "/v1/edits", model(Edit), data=data, files=files, headers=headers)


def download(url: str) -> Call[bytes]:
    """A signed link (an image, a photo, a checkpoint's `download_url`): fetched without the API key unless it
    points at the service itself."""
    return Call("GET", url, lambda response: response.content, headers={"Accept": "*/*"})


# checkpoints


def checkpoints_get(checkpoint: object) -> Call[Checkpoint]:
    return Call("GET", f"/v1/checkpoints/{segment(checkpoint)}", model(Checkpoint))


def checkpoint_file(checkpoint: object, format: str, rank: int | None) -> Call[httpx.Response]:
    if format not in ("svdiff", "lora"):
        raise ValueError("format is 'svdiff' or 'lora'")
    params = compact(format=format, rank=rank)
    path = f"/v1/checkpoints/{segment(checkpoint)}/file"
    return Call("GET", path, raw, params=params, headers={"Accept": "application/octet-stream, application/json"})


# admin


def admin_subjects(user_id: str | None, limit: int | None, cursor: str | None) -> Call[Page[AdminSubject]]:
    params = page_params(limit, cursor, user_id=user_id)
    return Call("GET", "/v1/admin/subjects", page(AdminSubject), params=params)


def admin_jobs(status: str | None, kind: str | None, limit: int | None, cursor: str | None) -> Call[Page[AdminJob]]:
    params = page_params(limit, cursor, status=status, kind=kind)
    return Call("GET", "/v1/admin/jobs", page(AdminJob), params=params)


def admin_stats() -> Call[Stats]:
    return Call("GET", "/v1/admin/stats", model(Stats))
