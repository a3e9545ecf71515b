from __future__ import annotations

import itertools
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PresenterDep, RuntimeDep, SessionDep
from api.services.common import owned
from core import keys
from core.celery_app import EXPORT_LORA, send
from core.errors import BlobNotFound, InvalidInput
from core.keys import PENDING_SUFFIX
from core.runtime import Runtime
from core.storage import Storage
from core.views import CheckpointOut
from models import Checkpoint

router = APIRouter(tags=["checkpoints"])
SAFETENSORS = "application/octet-stream"


def owned_checkpoint(checkpoint_id: str, session: SessionDep, user: CurrentUser) -> Checkpoint:
    return owned(session, Checkpoint, checkpoint_id, user, "checkpoint")


OwnedCheckpoint = Annotated[Checkpoint, Depends(owned_checkpoint)]


@router.get("/v1/checkpoints/{checkpoint_id}", response_model=CheckpointOut)
def get_checkpoint(checkpoint: OwnedCheckpoint, presenter: PresenterDep) -> CheckpointOut:
    return presenter.checkpoint(checkpoint)


def stream_blob(storage: Storage, key: str, filename: str) -> StreamingResponse:
    chunks = storage.iter_chunks(key)
    first = next(chunks, b"")  # storage errors surface here, before the response starts
    return StreamingResponse(
        itertools.chain([first], chunks),
        media_type=SAFETENSORS,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


EXPORT_RETRY_AFTER_S = 5


def request_export(runtime: Runtime, checkpoint: Checkpoint, rank: int) -> None:
    """Send one export per checkpoint and rank: a marker blob beside the export says one is on its way, and a
    new one is sent only once the marker is older than `lora_export_pending_seconds` (a lost message)."""
    storage, key = runtime.storage, keys.checkpoint_lora(checkpoint.user_id, checkpoint.id, rank)
    marker = key + PENDING_SUFFIX
    try:
        sent_at = float(storage.get(marker).decode())
    except (BlobNotFound, ValueError):
        sent_at = 0.0
    if time.time() - sent_at < runtime.settings.lora_export_pending_seconds:
        return
    storage.put(marker, str(time.time()).encode(), "text/plain")
    send(runtime.celery, EXPORT_LORA, [checkpoint.id, rank])


FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {SAFETENSORS: {}}},
    202: {"description": "The LoRA export is being made: ask again after Retry-After seconds"},
}


@router.get("/v1/checkpoints/{checkpoint_id}/file", response_class=StreamingResponse, responses=FILE_RESPONSES)
async def download(
    checkpoint: OwnedCheckpoint,
    runtime: RuntimeDep,
    format: Annotated[
        Literal["svdiff", "lora"], Query(description="The shifts, or their best rank-N LoRA.")
    ] = "svdiff",
    rank: Annotated[int | None, Query(ge=1, le=1024, description="LoRA rank (format=lora).")] = None,
) -> Response:
    """The checkpoint as safetensors: the spectral shifts, or a LoRA export made on an inference worker (202 with
    Retry-After while it is being made; one export per checkpoint and rank however often this is asked)."""
    storage = runtime.storage
    if format == "svdiff":
        return await run_in_threadpool(stream_blob, storage, checkpoint.storage_key, f"{checkpoint.id}.safetensors")
    rank = _lora_rank(runtime, rank)
    key = keys.checkpoint_lora(checkpoint.user_id, checkpoint.id, rank)
    if not await run_in_threadpool(storage.exists, key):
        await run_in_threadpool(request_export, runtime, checkpoint, rank)
        return JSONResponse({"status": "exporting", "retry_after": EXPORT_RETRY_AFTER_S}, status_code=202,
                            headers={"Retry-After": str(EXPORT_RETRY_AFTER_S)})  # fmt: skip
    return await run_in_threadpool(stream_blob, storage, key, f"{checkpoint.id}-lora-r{rank}.safetensors")


def _lora_rank(runtime: Runtime, rank: int | None) -> int:
    ranks = runtime.settings.lora_ranks
    if rank is None:
        return 16 if 16 in ranks else ranks[0]
    if rank not in ranks:
        raise InvalidInput("Unsupported rank.", errors=[{"field": "rank", "detail": f"one of {list(ranks)}"}])
    return rank
