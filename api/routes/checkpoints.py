from __future__ import annotations

import asyncio
import itertools
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, PresenterDep, RuntimeDep, SessionDep
from api.services.common import owned
from core import keys
from core.celery_app import EXPORT_LORA, send
from core.errors import InvalidInput, Unavailable
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


async def _wait_for(storage: Storage, key: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if await run_in_threadpool(storage.exists, key):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.25)


FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {SAFETENSORS: {}}},
    503: {"description": "The LoRA export is still being made (see Retry-After)"},
}


@router.get("/v1/checkpoints/{checkpoint_id}/file", response_class=StreamingResponse, responses=FILE_RESPONSES)
async def download(
    checkpoint: OwnedCheckpoint,
    runtime: RuntimeDep,
    format: Annotated[
        Literal["svdiff", "lora"], Query(description="The shifts, or their best rank-N LoRA.")
    ] = "svdiff",
    rank: Annotated[int | None, Query(ge=1, le=1024, description="LoRA rank (format=lora).")] = None,
) -> StreamingResponse:
    """The checkpoint as safetensors: the spectral shifts, or a LoRA export made on an inference worker."""
    storage = runtime.storage
    if format == "svdiff":
        return await run_in_threadpool(stream_blob, storage, checkpoint.storage_key, f"{checkpoint.id}.safetensors")
    rank = _lora_rank(runtime, rank)
    key = keys.checkpoint_lora(checkpoint.user_id, checkpoint.id, rank)
    if not await run_in_threadpool(storage.exists, key):
        await run_in_threadpool(send, runtime.celery, EXPORT_LORA, [checkpoint.id, rank])
        if not await _wait_for(storage, key, runtime.settings.lora_export_wait_seconds):
            raise Unavailable("The LoRA export is being made; retry shortly.", headers={"Retry-After": "10"})
    return await run_in_threadpool(stream_blob, storage, key, f"{checkpoint.id}-lora-r{rank}.safetensors")


def _lora_rank(runtime: Runtime, rank: int | None) -> int:
    ranks = runtime.settings.lora_ranks
    if rank is None:
        return 16 if 16 in ranks else ranks[0]
    if rank not in ranks:
        raise InvalidInput("Unsupported rank.", errors=[{"field": "rank", "detail": f"one of {list(ranks)}"}])
    return rank
