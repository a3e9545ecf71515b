"""The asynchronous client: the same resources as `Client`, every call awaited."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel

from svdiff_client import _endpoints as E
from svdiff_client._base import Call, ClientConfig, Deadline, RetryPolicy, export_retry_delay, segment
from svdiff_client._files import PhotoInput
from svdiff_client._sse import SSEDecoder
from svdiff_client._wait import STREAM_BROKE, OnUpdate, WaitOptions, WaitState
from svdiff_client.errors import ApiConnectionError, WaitTimeout, error_from_response
from svdiff_client.models import (
    AdminJob,
    AdminSubject,
    ApiKey,
    ApiKeyCreated,
    Checkpoint,
    Edit,
    Generation,
    Job,
    Page,
    Photo,
    Stats,
    Subject,
    SubjectWithTraining,
    Training,
    User,
    UserCreated,
)

T = TypeVar("T")
J = TypeVar("J", bound=Job)
M = TypeVar("M", bound=BaseModel)
DEFAULT_WAIT_S = 3600.0


class AsyncClient:
    """`AsyncClient(api_key, base_url)`; the key defaults to `$SVDIFF_API_KEY`, the URL to `$SVDIFF_BASE_URL`.

    `transport` is handed to the httpx client this makes (tests pass an `httpx.MockTransport`); `http_client` is
    used instead of making one (it is not closed by `close()`)."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        wait_options: WaitOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        fallback = http_client.base_url if http_client is not None else None
        self._config = ClientConfig(api_key, base_url, timeout, retry, max_retries, fallback)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self._config.timeout)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.wait_options = wait_options or WaitOptions()
        self.subjects = AsyncSubjects(self)
        self.trainings = AsyncTrainings(self)
        self.generations = AsyncGenerations(self)
        self.edits = AsyncEdits(self)
        self.checkpoints = AsyncCheckpoints(self)
        self.admin = AsyncAdmin(self)
        self.keys = AsyncKeys(self)
        self.users = AsyncUsers(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # sending

    async def _execute(self, call: Call[Any]) -> httpx.Response:
        """Send `call`, retrying per the retry policy; an error answer raises its typed ApiError."""
        retry = 0
        while True:
            try:
                response = await self._http.request(**self._config.request_args(call))
            except httpx.TransportError as exc:
                delay = self._config.retry.delay_after_error(exc, call, retry)
                if delay is None:
                    raise ApiConnectionError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
            else:
                if response.is_success:
                    return response
                delay = self._config.retry.delay_after_response(response, retry)
                if delay is None:
                    raise error_from_response(response)
            await self._sleep(delay)
            retry += 1

    async def _send(self, call: Call[T]) -> T:
        return call.parse(await self._execute(call))

    async def _iterate(self, make: Callable[[str | None], Call[Page[M]]]) -> AsyncIterator[M]:
        cursor: str | None = None
        while True:
            page = await self._send(make(cursor))
            for item in page.data:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # top level

    async def me(self) -> User:
        return await self._send(E.me())

    async def download(self, url: str) -> bytes:
        """The bytes behind a signed link (an image's, a photo's or a checkpoint's `url`)."""
        return await self._send(E.download(url))

    async def wait(
        self,
        job: J,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> J:
        """Wait for any job (training, generation or edit) to finish; see `AsyncTrainings.wait`."""
        return await self._wait(job.kind, job, type(job), timeout, raise_on_failure, on_update)

    async def _wait(
        self,
        kind: str,
        job: object,
        cls: type[J],
        timeout: float | None,
        raise_on_failure: bool,
        on_update: OnUpdate | None = None,
    ) -> J:
        job_id = segment(job)
        state = WaitState(kind, job_id, cls, timeout, self.wait_options, raise_on_failure, on_update)
        if isinstance(job, cls) and job.done:
            return state.finish(job)
        while state.use_stream:
            state.check_deadline()
            final = await self._follow_stream(state)
            if final is not None:
                return state.finish(final)
            if state.use_stream:
                await self._sleep(state.broke())
        while True:
            final = await self._send(E.job_get(state.path, cls))
            state.job = final
            state.report(final)
            if final.done:
                return state.finish(final)
            await self._sleep(state.next_poll_delay())

    async def _follow_stream(self, state: WaitState[J]) -> J | None:
        """The terminal job from the event stream; None when the stream broke (`state.broke()` not yet counted)
        or was refused (then `state.use_stream` is False)."""
        url = self._config.url(state.path + "/events")
        headers = self._config.headers(url, state.stream_headers())
        try:
            timeout = state.stream_timeout(self._config.timeout) if self._config.send_timeout else None
            # Named only when set: a client of another httpx line (Starlette's test client) has its own default.
            options: dict[str, Any] = {"timeout": timeout} if timeout else {}
            async with self._http.stream("GET", url, headers=headers, **options) as response:
                if not state.usable(response):
                    await response.aread()
                    state.refused(response)
                    return None
                decoder = SSEDecoder(state.last_event_id)
                async for line in response.aiter_lines():
                    event = decoder.decode(line)
                    job = state.on_event(event) if event is not None else None
                    if job is not None and job.done:
                        return job
                    state.check_deadline()
        except STREAM_BROKE:
            state.check_deadline()
        return None


class _AsyncResource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client


class AsyncSubjects(_AsyncResource):
    async def create(self, name: str, class_word: str, token: str | None = None) -> Subject:
        return await self._client._send(E.subjects_create(name, class_word, token))

    @overload
    async def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: Literal[False] = False, *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> Subject: ...  # fmt: skip

    @overload
    async def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: Literal[True], *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> SubjectWithTraining: ...  # fmt: skip

    async def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: bool = False, *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> Subject | SubjectWithTraining:  # fmt: skip
        """One multipart request: the subject and its photos; with `train=True` also its training (then
        `SubjectWithTraining`, and the request carries an `Idempotency-Key`)."""
        call = E.subjects_create_with_photos(name, class_word, photos, train, token, webhook_url, idempotency_key)
        return await self._client._send(call)

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Subject]:
        return await self._client._send(E.subjects_list(limit, cursor))

    def iter(self, *, limit: int | None = None) -> AsyncIterator[Subject]:
        """Every subject, newest first, following the cursors."""
        return self._client._iterate(lambda cursor: E.subjects_list(limit, cursor))

    async def get(self, subject: str | Subject) -> Subject:
        return await self._client._send(E.subjects_get(subject))

    async def delete(self, subject: str | Subject) -> None:
        await self._client._send(E.subjects_delete(subject))

    async def upload_photos(
        self, subject: str | Subject, photos: Iterable[PhotoInput] | PhotoInput
    ) -> builtins.list[Photo]:
        """Paths, bytes, binary files or PIL images; all stored or none (the error names each bad file)."""
        return await self._client._send(E.photos_upload(subject, photos))  # type: ignore[arg-type]

    async def photos_from_urls(self, subject: str | Subject, urls: Sequence[str]) -> builtins.list[Photo]:
        """Photos the service fetches itself; all or nothing."""
        return await self._client._send(E.photos_from_urls(subject, urls))

    async def list_photos(
        self, subject: str | Subject, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Photo]:
        return await self._client._send(E.photos_list(subject, limit, cursor))

    async def delete_photo(self, subject: str | Subject, photo: str | Photo) -> None:
        await self._client._send(E.photos_delete(subject, photo))


class _AsyncJobs(_AsyncResource):
    path: str
    kind: str
    model: type[Job]

    async def _get(self, job: object, cls: type[J]) -> J:
        return await self._client._send(E.job_get(f"{self.path}/{segment(job)}", cls))

    async def _cancel(self, job: object, cls: type[J]) -> J:
        return await self._client._send(E.job_cancel(f"{self.path}/{segment(job)}", cls))

    async def _list(self, cls: type[J], limit: int | None, cursor: str | None) -> Page[J]:
        return await self._client._send(E.job_list(self.path, cls, limit, cursor))


class AsyncTrainings(_AsyncJobs):
    path, kind = "/v1/trainings", "training"

    async def create(
        self, subject_ids: Sequence[str | Subject], *, steps: int | None = None, learning_rate: float | None = None,
        prior_preservation: bool | None = None, cut_mix_unmix: bool | None = None,
        train_text_encoder: bool | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> Training:  # fmt: skip
        """Train on 1 to 3 subjects; options left at None take the service's defaults."""
        call = E.trainings_create(
            subject_ids, idempotency_key, steps=steps, learning_rate=learning_rate,
            prior_preservation=prior_preservation, cut_mix_unmix=cut_mix_unmix,
            train_text_encoder=train_text_encoder, webhook_url=webhook_url,
        )  # fmt: skip
        return await self._client._send(call)

    async def get(self, training: str | Training) -> Training:
        return await self._get(training, Training)

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Training]:
        return await self._list(Training, limit, cursor)

    def iter(self, *, limit: int | None = None) -> AsyncIterator[Training]:
        return self._client._iterate(lambda cursor: E.job_list(self.path, Training, limit, cursor))

    async def cancel(self, training: str | Training) -> Training:
        return await self._cancel(training, Training)

    async def wait(
        self,
        training: str | Training,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Training:
        """Follow the job's event stream (polling when there is none) until it succeeds, fails or is canceled.
        A failed job raises `JobFailed` (unless `raise_on_failure=False`); past `timeout` seconds, `WaitTimeout`."""
        return await self._client._wait(self.kind, training, Training, timeout, raise_on_failure, on_update)


class AsyncGenerations(_AsyncJobs):
    path, kind = "/v1/generations", "generation"

    async def create(
        self, prompt: str, checkpoints: Sequence[E.CheckpointSpec] = (), *, negative_prompt: str | None = None,
        num_images: int | None = None, seed: int | None = None, steps: int | None = None,
        guidance_scale: float | None = None, width: int | None = None, height: int | None = None,
        scheduler: str | None = None, output_format: str | None = None, quality: int | None = None,
        aspect_ratio: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> Generation:  # fmt: skip
        """`checkpoints`: ids, Checkpoints or the Trainings that made them (scale 1.0), or `(id, scale)` pairs;
        none means the base model.
        Options left at None are not sent."""
        call = E.generations_create(
            prompt, checkpoints, idempotency_key, extra_body, negative_prompt=negative_prompt,
            num_images=num_images, seed=seed, steps=steps, guidance_scale=guidance_scale, width=width, height=height,
            scheduler=scheduler, output_format=output_format, quality=quality, aspect_ratio=aspect_ratio,
            webhook_url=webhook_url,
        )  # fmt: skip
        return await self._client._send(call)

    async def get(self, generation: str | Generation) -> Generation:
        return await self._get(generation, Generation)

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Generation]:
        return await self._list(Generation, limit, cursor)

    def iter(self, *, limit: int | None = None) -> AsyncIterator[Generation]:
        return self._client._iterate(lambda cursor: E.job_list(self.path, Generation, limit, cursor))

    async def cancel(self, generation: str | Generation) -> Generation:
        return await self._cancel(generation, Generation)

    async def wait(
        self,
        generation: str | Generation,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Generation:
        """As `AsyncTrainings.wait`."""
        return await self._client._wait(self.kind, generation, Generation, timeout, raise_on_failure, on_update)

    async def download_images(self, generation: str | Generation) -> builtins.list[bytes]:
        """The bytes of each image, in order (a generation given by id is fetched first)."""
        job = generation if isinstance(generation, Generation) else await self.get(generation)
        return [await self._client.download(image.url) for image in job.images]


class AsyncEdits(_AsyncJobs):
    path, kind = "/v1/edits", "edit"

    async def create(
        self, file: PhotoInput, source_prompt: str, target_prompt: str, *, steps: int | None = None,
        strength: float | None = None, seed: int | None = None, webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Edit:  # fmt: skip
        call = E.edits_create(
            file, idempotency_key, source_prompt=source_prompt, target_prompt=target_prompt, steps=steps,
            strength=strength, seed=seed, webhook_url=webhook_url,
        )  # fmt: skip
        return await self._client._send(call)

    async def get(self, edit: str | Edit) -> Edit:
        return await self._get(edit, Edit)

    async def wait(
        self,
        edit: str | Edit,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Edit:
        """As `AsyncTrainings.wait`."""
        return await self._client._wait(self.kind, edit, Edit, timeout, raise_on_failure, on_update)

    async def download_images(self, edit: str | Edit) -> builtins.list[bytes]:
        job = edit if isinstance(edit, Edit) else await self.get(edit)
        return [await self._client.download(image.url) for image in job.images]


class AsyncCheckpoints(_AsyncResource):
    async def get(self, checkpoint: str | Checkpoint) -> Checkpoint:
        return await self._client._send(E.checkpoints_get(checkpoint))

    async def download(
        self, checkpoint: str | Checkpoint, format: Literal["svdiff", "lora"] = "svdiff", rank: int | None = None,
        *, timeout: float | None = 600.0,
    ) -> bytes:  # fmt: skip
        """The safetensors file: the spectral shifts, or their rank-`rank` LoRA. A LoRA export not made yet is
        asked for again after each `Retry-After` until it comes; past `timeout` seconds, `WaitTimeout`."""
        deadline = Deadline(timeout)
        while True:
            response = await self._client._send(E.checkpoint_file(checkpoint, format, rank))
            if response.status_code != 202:
                return response.content
            if deadline.expired():
                raise WaitTimeout(f"the {format} export of checkpoint {segment(checkpoint)} is not ready")
            await self._client._sleep(deadline.bound(export_retry_delay(response)))


class AsyncAdmin(_AsyncResource):
    async def subjects(
        self, *, user_id: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[AdminSubject]:
        return await self._client._send(E.admin_subjects(user_id, limit, cursor))

    def iter_subjects(self, *, user_id: str | None = None, limit: int | None = None) -> AsyncIterator[AdminSubject]:
        return self._client._iterate(lambda cursor: E.admin_subjects(user_id, limit, cursor))

    async def jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[AdminJob]:  # fmt: skip
        return await self._client._send(E.admin_jobs(status, kind, limit, cursor))

    def iter_jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> AsyncIterator[AdminJob]:
        return self._client._iterate(lambda cursor: E.admin_jobs(status, kind, limit, cursor))

    async def stats(self) -> Stats:
        return await self._client._send(E.admin_stats())


class AsyncKeys(_AsyncResource):
    """Your API keys (`user="me"`), or any user's for an admin."""

    async def list(self, *, user: str = "me") -> builtins.list[ApiKey]:
        return await self._client._send(E.keys_list(user))

    async def create(self, *, user: str = "me") -> ApiKeyCreated:
        """A new key, shown only in this answer (`api_key`)."""
        return await self._client._send(E.keys_create(user))

    async def rotate(self, key: str | ApiKey, *, user: str = "me") -> ApiKeyCreated:
        return await self._client._send(E.keys_rotate(key, user))

    async def revoke(self, key: str | ApiKey, *, user: str = "me") -> None:
        """The key stops working at once (a user's last key cannot be revoked: 409)."""
        await self._client._send(E.keys_revoke(key, user))


class AsyncUsers(_AsyncResource):
    """Admin only."""

    async def create(self, name: str, role: Literal["user", "admin"] = "user") -> UserCreated:
        return await self._client._send(E.users_create(name, role))

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[User]:
        return await self._client._send(E.users_list(limit, cursor))
