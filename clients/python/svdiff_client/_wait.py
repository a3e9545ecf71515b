"""The decisions of `wait()`, shared by the sync and async clients: follow the job's event stream, resume it with
`Last-Event-ID` when the connection breaks, and poll `GET` with backoff when there is no usable stream."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
from pydantic import ValidationError as ModelValidationError

from svdiff_client._base import Deadline
from svdiff_client._sse import ServerSentEvent
from svdiff_client.errors import JobFailed, WaitTimeout, error_from_response
from svdiff_client.models import FAILED, Job

KIND_PATHS = {"training": "trainings", "generation": "generations", "edit": "edits"}
EVENT_TYPES = ("job", "message")
# The stream broke (to resume, or poll), as opposed to a problem the caller must see.
STREAM_BROKE = (httpx.TransportError, httpx.StreamError)
J = TypeVar("J", bound=Job)


OnUpdate = Callable[[Job], None]  # called with the job as it changes while waiting


@dataclass(frozen=True)
class WaitOptions:
    """`poll_interval` grows by `poll_backoff` up to `max_poll_interval`; a stream silent (not even a heartbeat) for
    `stream_read_timeout` seconds counts as broken; after `max_reconnects` breaks in a row without a new event,
    polling takes over. `use_stream=False` polls from the start."""

    poll_interval: float = 1.0
    max_poll_interval: float = 10.0
    poll_backoff: float = 1.5
    stream_read_timeout: float = 45.0
    max_reconnects: int = 3
    reconnect_delay: float = 0.5
    use_stream: bool = True


class WaitState(Generic[J]):
    """One wait: the deadline, the last job and event id seen, and whether the stream is still worth trying."""

    def __init__(
        self,
        kind: str,
        job_id: str,
        cls: type[J],
        timeout: float | None,
        options: WaitOptions,
        raise_on_failure: bool,
        on_update: OnUpdate | None = None,
    ) -> None:
        if kind not in KIND_PATHS:
            raise ValueError(f"cannot wait for a job of kind {kind!r}")
        self.kind, self.job_id, self.cls, self.options = kind, job_id, cls, options
        self.path = f"/v1/{KIND_PATHS[kind]}/{job_id}"
        self.deadline = Deadline(timeout)
        self.raise_on_failure = raise_on_failure
        self.on_update = on_update
        self._reported: tuple[str, int, int | None] | None = None
        self.job: J | None = None
        self.last_event_id: str | None = None
        self.use_stream = options.use_stream
        self.breaks = 0
        self.server_retry_ms: int | None = None
        self._poll_delay = options.poll_interval

    def check_deadline(self) -> None:
        if self.deadline.expired():
            seen = f" (last seen {self.job.status})" if self.job else ""
            limit = self.deadline.timeout or 0.0
            raise WaitTimeout(f"{self.kind} {self.job_id} not finished after {limit:g} s{seen}", self.job)

    def _bounded(self, delay: float) -> float:
        self.check_deadline()
        return self.deadline.bound(delay)

    # the stream

    def stream_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def stream_timeout(self, base: float | httpx.Timeout) -> httpx.Timeout:
        """The connect timeout of the client; reads bounded by the silence allowed and by the deadline."""
        connect = base.connect if isinstance(base, httpx.Timeout) else base
        read = self.options.stream_read_timeout
        remaining = self.deadline.remaining()
        if remaining is not None:
            read = max(0.001, min(read, remaining + 0.05))
        return httpx.Timeout(connect, read=read)

    @staticmethod
    def usable(response: httpx.Response) -> bool:
        content_type = response.headers.get("content-type", "")
        return response.status_code == 200 and content_type.startswith("text/event-stream")

    def refused(self, response: httpx.Response) -> None:
        """The stream was not given (its body read): a bad key is raised; anything else (no such route, 405, 501,
        too many open streams, a server error, not an event stream at all) hands over to polling, whose GET
        raises for a job that does not exist."""
        if response.status_code in (401, 403):
            raise error_from_response(response)
        self.use_stream = False

    def on_event(self, event: ServerSentEvent) -> J | None:
        """The job an event carries, or None (an event of another type, or not a job)."""
        self.last_event_id = event.id if event.id is not None else self.last_event_id
        self.server_retry_ms = event.retry if event.retry is not None else self.server_retry_ms
        if event.event not in EVENT_TYPES:
            return None
        try:
            job = self.cls.model_validate(json.loads(event.data))
        except (ValueError, ModelValidationError):
            return None
        self.job, self.breaks = job, 0
        self.report(job)
        return job

    def report(self, job: Job) -> None:
        """`on_update(job)` when its status, step or queue position changed since the last call."""
        seen = (job.status, job.progress.step, job.queue_position)
        if self.on_update is not None and seen != self._reported:
            self._reported = seen
            self.on_update(job)

    def broke(self) -> float:
        """The stream ended or broke before the terminal state: the delay before resuming it (or polling)."""
        self.breaks += 1
        if self.breaks > self.options.max_reconnects:
            self.use_stream = False
            return 0.0
        base = self.server_retry_ms / 1000 if self.server_retry_ms is not None else self.options.reconnect_delay
        return self._bounded(base * 2 ** (self.breaks - 1))

    # polling

    def next_poll_delay(self) -> float:
        delay = self._poll_delay * random.uniform(0.9, 1.1)
        self._poll_delay = min(self.options.max_poll_interval, self._poll_delay * self.options.poll_backoff)
        return self._bounded(delay)

    # the end

    def finish(self, job: J) -> J:
        self.job = job
        if job.status == FAILED and self.raise_on_failure:
            raise JobFailed(job)
        return job
