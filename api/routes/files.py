"""Downloads for the local storage backend: signed, expiring links (S3 backends hand out presigned URLs)."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep
from core.errors import BlobNotFound, NotFound
from core.generation_options import image_format_of_key
from core.storage import LocalStorage

router = APIRouter(tags=["files"])


@router.get("/v1/files/{token}", response_class=StreamingResponse, include_in_schema=False)
async def download(token: str, runtime: RuntimeDep) -> StreamingResponse:
    storage = runtime.storage
    granted = storage.signer.verify(token) if isinstance(storage, LocalStorage) else None
    if granted is None:
        raise NotFound("This link is invalid or has expired.")
    key, filename = granted
    try:
        data = await run_in_threadpool(storage.get, key)
    except BlobNotFound as exc:
        raise NotFound("This file no longer exists.") from exc
    image = image_format_of_key(key)  # the type it was stored with, as S3 serves it (mimetypes may lack webp)
    media = image.content_type if image else mimetypes.guess_type(key)[0] or "application/octet-stream"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else {}
    return StreamingResponse(iter([data]), media_type=media, headers=headers)
