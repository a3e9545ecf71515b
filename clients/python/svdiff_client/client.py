"""The synchronous client."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
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


class Client:
    """`Client(api_key, base_url)`; the key defaults to `$SVDIFF_API_KEY`, the URL to `$SVDIFF_BASE_URL`.

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
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        fallback = http_client.base_url if http_client is not None else None
        self._config = ClientConfig(api_key, base_url, timeout, retry, max_retries, fallback)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self._config.timeout)
        self._sleep: Callable[[float], None] = time.sleep
        self.wait_options = wait_options or WaitOptions()
        self.subjects = Subjects(self)
        self.trainings = Trainings(self)
        self.generations = Generations(self)
        self.edits = Edits(self)
        self.checkpoints = Checkpoints(self)
        self.admin = Admin(self)
        self.keys = Keys(self)
        self.users = Users(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # sending

    def _execute(self, call: Call[Any]) -> httpx.Response:
        """Send `call`, retrying per the retry policy; an error answer raises its typed ApiError."""
        retry = 0
        while True:
            try:
                response = self._http.request(**self._config.request_args(call))
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
            self._sleep(delay)
            retry += 1

    def _send(self, call: Call[T]) -> T:
        return call.parse(self._execute(call))

    def _iterate(self, make: Callable[[str | None], Call[Page[M]]]) -> Iterator[M]:
        cursor: str | None = None
        while True:
            page = self._send(make(cursor))
            yield from page.data
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # top level

    def me(self) -> User:
        return self._send(E.me())

    def download(self, url: str) -> bytes:
        """The bytes behind a signed link (an image's, a photo's or a checkpoint's `url`)."""
        return self._send(E.download(url))

    def wait(
        self,
        job: J,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> J:
        """Wait for any job (training, generation or edit) to finish; see `Trainings.wait`."""
        return self._wait(job.kind, job, type(job), timeout, raise_on_failure, on_update)

    def _wait(
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
            final = self._follow_stream(state)
            if final is not None:
                return state.finish(final)
            if state.use_stream:
                self._sleep(state.broke())
        while True:
            final = self._send(E.job_get(state.path, cls))
            state.job = final
            state.report(final)
            if final.done:
                return state.finish(final)
            self._sleep(state.next_poll_delay())

    def _follow_stream(self, state: WaitState[J]) -> J | None:
        """The terminal job from the event stream; None when the stream broke (`state.broke()` not yet counted)
        or was refused (then `state.use_stream` is False)."""
        url = self._config.url(state.path + "/events")
        headers = self._config.headers(url, state.stream_headers())
        try:
            timeout = state.stream_timeout(self._config.timeout) if self._config.send_timeout else None
            # Named only when set: a client of another httpx line (Starlette's test client) has its own default.
            options: dict[str, Any] = {"timeout": timeout} if timeout else {}
            with self._http.stream("GET", url, headers=headers, **options) as response:
                if not state.usable(response):
                    response.read()
                    state.refused(response)
                    return None
                decoder = SSEDecoder(state.last_event_id)
                for line in response.iter_lines():
                    event = decoder.decode(line)
                    job = state.on_event(event) if event is not None else None
                    if job is not None and job.done:
                        return job
                    state.check_deadline()
        except STREAM_BROKE:
            state.check_deadline()
        return None


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class Subjects(_Resource):
    def create(self, name: str, class_word: str, token: str | None = None) -> Subject:
        return self._client._send(E.subjects_create(name, class_word, token))

    @overload
    def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: Literal[False] = False, *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> Subject: ...  # fmt: skip

    @overload
    def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: Literal[True], *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> SubjectWithTraining: ...  # fmt: skip

    def create_with_photos(
        self, name: str, class_word: str, photos: Iterable[PhotoInput], train: bool = False, *,
        token: str | None = None, webhook_url: str | None = None, idempotency_key: str | None = None,
    ) -> Subject | SubjectWithTraining:  # fmt: skip
        """One multipart request: the subject and its photos; with `train=True` also its training (then
        `SubjectWithTraining`, and the request carries an `Idempotency-Key`)."""
        call = E.subjects_create_with_photos(name, class_word, photos, train, token, webhook_url, idempotency_key)
        return self._client._send(call)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Subject]:
        return self._client._send(E.subjects_list(limit, cursor))

    def iter(self, *, limit: int | None = None) -> Iterator[Subject]:
        """Every subject, newest first, following the cursors."""
        return self._client._iterate(lambda cursor: E.subjects_list(limit, cursor))

    def get(self, subject: str | Subject) -> Subject:
        return self._client._send(E.subjects_get(subject))

    def delete(self, subject: str | Subject) -> None:
        self._client._send(E.subjects_delete(subject))

    def upload_photos(self, subject: str | Subject, photos: Iterable[PhotoInput] | PhotoInput) -> builtins.list[Photo]:
        """Paths, bytes, binary files or PIL images; all stored or none (the error names each bad file)."""
        return self._client._send(E.photos_upload(subject, photos))  # type: ignore[arg-type]

    def photos_from_urls(self, subject: str | Subject, urls: Sequence[str]) -> builtins.list[Photo]:
        """Photos the service fetches itself; all or nothing."""
        return self._client._send(E.photos_from_urls(subject, urls))

    def list_photos(
        self, subject: str | Subject, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Photo]:
        return self._client._send(E.photos_list(subject, limit, cursor))

    def delete_photo(self, subject: str | Subject, photo: str | Photo) -> None:
        self._client._send(E.photos_delete(subject, photo))


class _Jobs(_Resource):
    path: str
    kind: str
    model: type[Job]

    def _get(self, job: object, cls: type[J]) -> J:
        return self._client._send(E.job_get(f"{self.path}/{segment(job)}", cls))

    def _cancel(self, job: object, cls: type[J]) -> J:
        return self._client._send(E.job_cancel(f"{self.path}/{segment(job)}", cls))

    def _list(self, cls: type[J], limit: int | None, cursor: str | None) -> Page[J]:
        return self._client._send(E.job_list(self.path, cls, limit, cursor))


class Trainings(_Jobs):
    path, kind = "/v1/trainings", "training"

    def create(
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
        return self._client._send(call)

    def get(self, training: str | Training) -> Training:
        return self._get(training, Training)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Training]:
        return self._list(Training, limit, cursor)

    def iter(self, *, limit: int | None = None) -> Iterator[Training]:
        return self._client._iterate(lambda cursor: E.job_list(self.path, Training, limit, cursor))

    def cancel(self, training: str | Training) -> Training:
        return self._cancel(training, Training)

    def wait(
        self,
        training: str | Training,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Training:
        """Follow the job's event stream (polling when there is none) until it succeeds, fails or is canceled.
        A failed job raises `JobFailed` (unless `raise_on_failure=False`); past `timeout` seconds, `WaitTimeout`."""
        return self._client._wait(self.kind, training, Training, timeout, raise_on_failure, on_update)


class Generations(_Jobs):
    path, kind = "/v1/generations", "generation"

    def create(
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
        return self._client._send(call)

    def get(self, generation: str | Generation) -> Generation:
        return self._get(generation, Generation)

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[Generation]:
        return self._list(Generation, limit, cursor)

    def iter(self, *, limit: int | None = None) -> Iterator[Generation]:
        return self._client._iterate(lambda cursor: E.job_list(self.path, Generation, limit, cursor))

    def cancel(self, generation: str | Generation) -> Generation:
        return self._cancel(generation, Generation)

    def wait(
        self,
        generation: str | Generation,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Generation:
        """As `Trainings.wait`."""
        return self._client._wait(self.kind, generation, Generation, timeout, raise_on_failure, on_update)

    def download_images(self, generation: str | Generation) -> builtins.list[bytes]:
        """The bytes of each image, in order (a generation given by id is fetched first)."""
        job = generation if isinstance(generation, Generation) else self.get(generation)
        return [self._client.download(image.url) for image in job.images]


class Edits(_Jobs):
    path, kind = "/v1/edits", "edit"

    def create(
        self, file: PhotoInput, source_prompt: str, target_prompt: str, *, steps: int | None = None,
        strength: float | None = None, seed: int | None = None, webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> Edit:  # fmt: skip
        call = E.edits_create(
            file, idempotency_key, source_prompt=source_prompt, target_prompt=target_prompt, steps=steps,
            strength=strength, seed=seed, webhook_url=webhook_url,
        )  # fmt: skip
        return self._client._send(call)

    def get(self, edit: str | Edit) -> Edit:
        return self._get(edit, Edit)

    def wait(
        self,
        edit: str | Edit,
        *,
        timeout: float | None = DEFAULT_WAIT_S,
        raise_on_failure: bool = True,
        on_update: OnUpdate | None = None,
    ) -> Edit:
        """As `Trainings.wait`."""
        return self._client._wait(self.kind, edit, Edit, timeout, raise_on_failure, on_update)

    def download_images(self, edit: str | Edit) -> builtins.list[bytes]:
        job = edit if isinstance(edit, Edit) else self.get(edit)
        return [self._client.download(image.url) for image in job.images]


class Checkpoints(_Resource):
    def get(self, checkpoint: str | Checkpoint) -> Checkpoint:
        return self._client._send(E.checkpoints_get(checkpoint))

    def download(
        self, checkpoint: str | Checkpoint, format: Literal["svdiff", "lora"] = "svdiff", rank: int | None = None,
        *, timeout: float | None = 600.0,
    ) -> bytes:  # fmt: skip
        """The safetensors file: the spectral shifts, or their rank-`rank` LoRA. A LoRA export not made yet is
        asked for again after each `Retry-After` until it comes; past `timeout` seconds, `WaitTimeout`."""
        deadline = Deadline(timeout)
        while True:
            response = self._client._send(E.checkpoint_file(checkpoint, format, rank))
            if response.status_code != 202:
                return response.content
            if deadline.expired():
                raise WaitTimeout(f"the {format} export of checkpoint {segment(checkpoint)} is not ready")
            self._client._sleep(deadline.bound(export_retry_delay(response)))


class Admin(_Resource):
    def subjects(
        self, *, user_id: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[AdminSubject]:
        return self._client._send(E.admin_subjects(user_id, limit, cursor))

    def iter_subjects(self, *, user_id: str | None = None, limit: int | None = None) -> Iterator[AdminSubject]:
        return self._client._iterate(lambda cursor: E.admin_subjects(user_id, limit, cursor))

    def jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[AdminJob]:  # fmt: skip
        return self._client._send(E.admin_jobs(status, kind, limit, cursor))

    def iter_jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> Iterator[AdminJob]:
        return self._client._iterate(lambda cursor: E.admin_jobs(status, kind, limit, cursor))

    def stats(self) -> Stats:
        return self._client._send(E.admin_stats())


class Keys(_Resource):
    """Your API keys (`user="me"`), or any user's for an admin."""

    def list(self, *, user: str = "me") -> builtins.list[ApiKey]:
        return self._client._send(E.keys_list(user))

    def create(self, *, user: str = "me") -> ApiKeyCreated:
        """A new key, shown only in this answer (`api_key`)."""
        return self._client._send(E.keys_create(user))

    def rotate(self, key: str | ApiKey, *, user: str = "me") -> ApiKeyCreated:
        return self._client._send(E.keys_rotate(key, user))

    def revoke(self, key: str | ApiKey, *, user: str = "me") -> None:
        """The key stops working at once (a user's last key cannot be revoked: 409)."""
        self._client._send(E.keys_revoke(key, user))


class Users(_Resource):
    """Admin only."""

    def create(self, name: str, role: Literal["user", "admin"] = "user") -> UserCreated:
        return self._client._send(E.users_create(name, role))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> Page[User]:
        return self._client._send(E.users_list(limit, cursor))
