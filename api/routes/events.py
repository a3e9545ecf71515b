"""Live job events: `GET /v1/{trainings|generations|edits}/{id}/events`, server-sent events of the job as `GET`
returns it, one per change (status, progress, queue position, ETA), ending at the terminal state.

A stream waits on change notices (`core.events`) and re-reads its job only when one comes (at most every
`events_min_interval_seconds`, so a busy queue's notices do not turn into a read per notice), or every
`events_reread_seconds` in case one was lost. Between events it sends a comment every `events_heartbeat_seconds`,
so proxies keep the connection open. Each event's id names the state it carries: `Last-Event-ID` resumes without
repeating a state the client already has. Open streams per user are capped per API process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentUser, RuntimeDep, SessionDep
from api.services.common import owned
from core.errors import ServiceError
from core.events import job_channel, queue_channel
from core.runtime import Runtime
from core.views import JobOut, Presenter
from models import TERMINAL, Edit, Generation, Job, Training

router = APIRouter()
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)]
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: events `job` whose data is the job as GET returns it; `: ping` comments "
        "as heartbeats; the stream ends after the terminal state.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}


class TooManyStreams(ServiceError):
    status, title, type_slug = 429, "Too many event streams", "too-many-event-streams"

    def __init__(self, limit: int) -> None:
        super().__init__(f"At most {limit} open event streams per user; close one first.",
                         headers={"Retry-After": "5"})  # fmt: skip
        self.limit = limit

    def extra(self) -> dict[str, Any]:
        return {"limit": self.limit}


class StreamSlots:
    """Open streams per user in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, user_id: str, limit: int) -> Callable[[], None]:
        """One slot, or 429; returns its release, which may be called more than once."""
        with self._lock:
            if self._open.get(user_id, 0) >= limit:
                raise TooManyStreams(limit)
            self._open[user_id] = self._open.get(user_id, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._open[user_id] - 1
                if left:
                    self._open[user_id] = left
                else:
                    del self._open[user_id]

        return release


def state_id(job: JobOut) -> str:
    """What a client has seen: the same id means the same status, progress and queue position."""
    position = "-" if job.queue_position is None else job.queue_position
    return f"{job.status}.{job.progress.step}.{job.progress.total}.{position}"


def render(job: JobOut) -> str:
    data = json.dumps(job.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {state_id(job)}\nevent: job\ndata: {data}\n\n"


def read_job(runtime: Runtime, job_id: str) -> JobOut | None:
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        return None if job is None else Presenter(session, runtime.storage, runtime.settings).job(job)


async def job_events(
    runtime: Runtime, job: Job, last_id: str | None, release: Callable[[], None]
) -> AsyncIterator[str]:
    settings = runtime.settings
    try:
        async with runtime.events.subscribe((job_channel(job.id), queue_channel(job.queue))) as waiter:
            yield f"retry: {int(settings.events_min_interval_seconds * 1000) + 1000}\n\n"
            while True:
                out = await run_in_threadpool(read_job, runtime, job.id)
                last_read = time.monotonic()
                if out is None:  # deleted with its subject: nothing more will come
                    return
                if state_id(out) != last_id:
                    last_id = state_id(out)
                    yield render(out)
                if out.status in TERMINAL:
                    return
                await asyncio.sleep(settings.events_min_interval_seconds)
                while not await waiter.wait(settings.events_heartbeat_seconds):
                    if time.monotonic() - last_read >= settings.events_reread_seconds:
                        break
                    yield ": ping\n\n"
    finally:
        release()


def _stream(kind: type[Job], name: str, job_id: str, request: Request, session: SessionDep, runtime: Runtime,
            user: CurrentUser, last_id: str | None) -> StreamingResponse:  # fmt: skip
    job = owned(session, kind, job_id, user, name)
    slots: StreamSlots = request.app.state.event_slots
    release = slots.take(user.id, runtime.settings.max_event_streams_per_user)  # a 429 is an answer, not a stream
    session.expunge(job)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    body = job_events(runtime, job, last_id, release)
    # The stream releases its slot when it ends; the background task too, should it never have started.
    return StreamingResponse(body, media_type="text/event-stream", headers=headers, background=BackgroundTask(release))


@router.get("/v1/trainings/{job_id}/events", responses=STREAM_DOC, response_class=StreamingResponse,
            tags=["trainings"])  # fmt: skip
def training_events(job_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, user: CurrentUser,
                    last_event_id: LastEventId = None) -> StreamingResponse:  # fmt: skip
    """Live events of a training (server-sent events), until it ends."""
    return _stream(Training, "training", job_id, request, session, runtime, user, last_event_id)


@router.get("/v1/generations/{job_id}/events", responses=STREAM_DOC, response_class=StreamingResponse,
            tags=["generations"])  # fmt: skip
def generation_events(job_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, user: CurrentUser,
                      last_event_id: LastEventId = None) -> StreamingResponse:  # fmt: skip
    """Live events of a generation (server-sent events), until it ends."""
    return _stream(Generation, "generation", job_id, request, session, runtime, user, last_event_id)


@router.get("/v1/edits/{job_id}/events", responses=STREAM_DOC, response_class=StreamingResponse, tags=["edits"])
def edit_events(job_id: str, request: Request, session: SessionDep, runtime: RuntimeDep, user: CurrentUser,
                last_event_id: LastEventId = None) -> StreamingResponse:  # fmt: skip
    """Live events of an edit (server-sent events), until it ends."""
    return _stream(Edit, "edit", job_id, request, session, runtime, user, last_event_id)
