from __future__ import annotations

import logging
from functools import partial

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.images import check_image, clean_image
from api.uploads import UploadedFile
from core import keys, outbox, positions
from core.db import on_rollback, savepoint
from core.errors import Conflict, InvalidInput, NotFound, ServiceError
from core.runtime import Runtime
from models import Checkpoint, Job, Photo, Subject, User, new_id, training_subjects

log = logging.getLogger(__name__)


def pick_token(session: Session, user: User, candidates: tuple[str, ...]) -> str:
    used = set(session.scalars(select(Subject.token).where(Subject.user_id == user.id)))
    for token in candidates:
        if token not in used:
            return token
    raise Conflict(
        f"All {len(candidates)} default tokens are used by your subjects: pass a `token` (one lowercase word) to "
        "create another, or delete a subject."
    )


def create_subject(
    session: Session, runtime: Runtime, user: User, name: str, class_word: str, token: str | None
) -> Subject:
    """With no `token`, the first free default one; a concurrent request that takes it first makes this one
    pick the next (uq_subjects_user_token decides, in a savepoint)."""
    if token is not None:
        subject = _insert_subject(session, user, name, class_word, token)
        if subject is None:
            raise Conflict(f"Another of your subjects already uses the token {token!r}.")
        return subject
    candidates = runtime.settings.subject_tokens
    for _ in candidates:
        subject = _insert_subject(session, user, name, class_word, pick_token(session, user, candidates))
        if subject is not None:
            return subject
    raise Conflict(f"All {len(candidates)} default tokens were taken meanwhile: pass a `token` (one lowercase word).")


def _insert_subject(session: Session, user: User, name: str, class_word: str, token: str) -> Subject | None:
    """The new subject, or None when another of the user's subjects took `token` concurrently."""
    subject = Subject(user_id=user.id, name=name, class_word=class_word, token=token)
    try:
        with savepoint(session):
            session.add(subject)
            session.flush()
    except IntegrityError:
        return None
    session.refresh(subject)  # loads photo_count
    return subject


def _rejections(uploads: list[UploadedFile], runtime: Runtime) -> list[tuple[int, UploadedFile, ServiceError]]:
    settings = runtime.settings
    bad = []
    for index, upload in enumerate(uploads):
        try:
            if upload.refused is not None:  # a photo URL that could not be fetched
                raise upload.refused
            check_image(upload.read(), max_pixels=settings.max_photo_pixels, min_side=settings.min_photo_side)
        except ServiceError as exc:
            bad.append((index, upload, exc))
    return bad


def check_uploads(uploads: list[UploadedFile], runtime: Runtime) -> None:
    """Raise one error naming every bad file (or URL: `files[i]`, `urls[i]`); its status is theirs when they
    agree, else 422."""
    bad = _rejections(uploads, runtime)
    if not bad:
        return
    statuses = {exc.status for _, _, exc in bad}
    errors = [{"field": f"{u.field}[{i}]", "detail": f"{u.filename or 'file'}: {exc.detail}"} for i, u, exc in bad]
    what = "URLs" if uploads[0].field == "urls" else "files"
    detail = f"{len(bad)} of {len(uploads)} {what} were refused; nothing was stored."
    cls = type(bad[0][2]) if len(statuses) == 1 else InvalidInput
    raise cls(detail, errors=errors)


def check_room(runtime: Runtime, count: int, adding: int) -> None:
    """409 unless a subject with `count` photos can take `adding` more."""
    most = runtime.settings.max_photos_per_subject
    if count + adding > most:
        raise Conflict(f"A subject holds at most {most} photos; it has {count}.")


def add_photos(session: Session, runtime: Runtime, subject: Subject, uploads: list[UploadedFile]) -> list[Photo]:
    """All or nothing: every file is checked before any is stored; stored blobs are removed if the request's
    transaction rolls back."""
    settings = runtime.settings
    if not uploads:
        raise InvalidInput("Send at least one file.", errors=[{"field": "files", "detail": "no file"}])
    # Uploads to one subject take turns (the row lock lasts until the commit), so parallel ones cannot all
    # pass the count below; SQLite ignores FOR UPDATE but has one writer at a time anyway.
    if session.scalar(select(Subject.id).where(Subject.id == subject.id).with_for_update()) is None:
        raise NotFound("This subject was just deleted.")
    count = session.scalar(select(func.count(Photo.id)).where(Photo.subject_id == subject.id)) or 0
    check_room(runtime, count, len(uploads))
    check_uploads(uploads, runtime)
    photos: list[Photo] = []
    for upload in uploads:
        clean = clean_image(upload.read(), max_pixels=settings.max_photo_pixels, min_side=settings.min_photo_side)
        photo_id = new_id()
        key = keys.photo(subject.user_id, subject.id, photo_id, clean.ext)
        runtime.storage.put(key, clean.data, clean.content_type)
        on_rollback(session, partial(forget_blobs, runtime, [key]))
        photos.append(
            Photo(id=photo_id, subject_id=subject.id, user_id=subject.user_id, storage_key=key,
                  content_type=clean.content_type, width=clean.width, height=clean.height,
                  size_bytes=len(clean.data), sha256=clean.sha256)
        )  # fmt: skip
    session.add_all(photos)
    session.flush()
    return photos


def forget_blobs(runtime: Runtime, blob_keys: list[str]) -> None:
    """Remove blobs stored by a request whose transaction rolled back."""
    for key in blob_keys:
        try:
            runtime.storage.delete(key)
        except Exception:
            log.warning("could not remove blob %s after a failed request", key)


def delete_photo(session: Session, runtime: Runtime, photo: Photo) -> None:
    session.delete(photo)
    session.flush()
    outbox.schedule(session, runtime, [photo.storage_key])


def delete_subject(session: Session, runtime: Runtime, subject: Subject) -> None:
    """The subject, its photos, the trainings on it and their checkpoints: rows now, blobs through the outbox
    (tried after the commit, then by the reconciler until storage takes them)."""
    training_ids = list(
        session.scalars(select(training_subjects.c.training_id).where(training_subjects.c.subject_id == subject.id))
    )
    # Lock the trainings first: one committing its checkpoint now holds its row, so its checkpoint is read (and its
    # blob deleted) once it has committed, never missed by a read taken just before.
    session.execute(select(Job.id).where(Job.id.in_(training_ids)).with_for_update())
    checkpoints = session.scalars(select(Checkpoint).where(Checkpoint.training_id.in_(training_ids))).all()
    prefixes = [keys.subject_prefix(subject.user_id, subject.id)]
    prefixes += [keys.checkpoint_prefix(c.user_id, c.id) for c in checkpoints]
    prefixes += [keys.training_state(t) for t in training_ids]
    positions.depart_all(session, list(training_ids))  # queued ones leave their rounds
    session.execute(delete(Job).where(Job.id.in_(training_ids)))  # checkpoints go with them (FK cascade)
    session.execute(delete(Subject).where(Subject.id == subject.id))  # photos go with it
    session.expunge(subject)
    outbox.schedule(session, runtime, prefixes)
