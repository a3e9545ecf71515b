"""Typed errors: every problem+json answer (RFC 9457) becomes an `ApiError` subclass chosen by its status."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from svdiff_client.models import Job, JobError


class SvdiffError(Exception):
    """Base of every error this SDK raises."""


@dataclass(frozen=True)
class FieldError:
    field: str
    detail: str


class ApiError(SvdiffError):
    """The service answered an error. Carries the problem fields; `problem` is the whole body (with any extra
    members such as `limit` or `queue`), `retry_after` the `Retry-After` header in seconds, when sent."""

    status: int
    type: str
    title: str
    detail: str
    instance: str | None
    errors: list[FieldError]
    problem: dict[str, Any]
    retry_after: float | None

    def __init__(self, status: int, problem: dict[str, Any], *, retry_after: float | None = None) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type") or "about:blank")
        self.title = str(problem.get("title") or "")
        self.detail = str(problem.get("detail") or "")
        instance = problem.get("instance")
        self.instance = str(instance) if instance is not None else None
        raw_errors = problem.get("errors")
        self.errors = [
            FieldError(field=str(e.get("field", "")), detail=str(e.get("detail", "")))
            for e in (raw_errors if isinstance(raw_errors, list) else [])
            if isinstance(e, dict)
        ]
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}".rstrip(": ")
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.detail}" for e in self.errors) + ")"
        return text


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: a missing, bad or revoked API key."""


class Forbidden(ApiError):
    """403: a user calling an admin endpoint."""


class NotFound(ApiError):
    """404: no such resource, or one belonging to another user."""


class Conflict(ApiError):
    """409: a state conflict (e.g. a subject without photos, a finished job) or an idempotency conflict."""


class PayloadTooLarge(ApiError):
    """413."""


class UnsupportedMediaType(ApiError):
    """415: not an accepted image."""


class ValidationError(ApiError):
    """422: invalid fields; `errors` names each."""


class RateLimited(ApiError):
    """429: rate limited or over a quota; `retry_after` says when to try again."""


class ServerError(ApiError):
    """Any 5xx other than 503."""


class ServiceUnavailable(ServerError):
    """503: a dependency of the service (database, broker, storage) is down."""


ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
}


class ApiConnectionError(SvdiffError):
    """The service could not be reached (or the connection broke) and retries, if any, were spent."""


class JobFailed(SvdiffError):
    """A waited-for job ended `failed`; `job` is its final state and `error` its `{type, detail}`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.error: JobError | None = job.error
        reason = f"{job.error.type}: {job.error.detail}" if job.error else "no error given"
        super().__init__(f"{job.kind} {job.id} failed ({reason})")


class WaitTimeout(SvdiffError, TimeoutError):
    """A wait (for a job, or for a LoRA export) ran past its timeout; `job` is the last state seen, if any."""

    def __init__(self, message: str, job: Job | None = None) -> None:
        super().__init__(message)
        self.job = job


class WebhookVerificationError(SvdiffError):
    """A webhook whose headers, timestamp or signature do not check out."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error of an error answer (the response body must have been read)."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        body = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        problem = body
    else:  # not problem+json (a proxy's HTML page, say): keep what it said
        text = response.content[:500].decode("utf-8", "replace").strip()
        problem = {"title": response.reason_phrase, "status": status, "detail": text}
    cls = ERRORS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, problem, retry_after=parse_retry_after(response.headers.get("retry-after")))
