"""One error base class that carries its HTTP status; the API renders every one as application/problem+json."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status: int = 400
    title: str = "Bad request"
    type_slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        if status is not None:
            self.status = status

    def extra(self) -> dict[str, Any]:
        return {"errors": self.errors} if self.errors else {}


class Unauthorized(ServiceError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "Missing or invalid API key.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(ServiceError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(ServiceError):
    status, title, type_slug = 409, "Conflict", "conflict"


class TooLarge(ServiceError):
    status, title, type_slug = 413, "Content too large", "too-large"


class UnsupportedMedia(ServiceError):
    status, title, type_slug = 415, "Unsupported media type", "unsupported-media-type"


class InvalidInput(ServiceError):
    status, title, type_slug = 422, "Invalid input", "invalid-input"


class Unavailable(ServiceError):
    status, title, type_slug = 503, "Service unavailable", "unavailable"


class StorageUnavailable(Unavailable):
    type_slug = "storage-unavailable"


class BrokerUnavailable(Unavailable):
    type_slug = "broker-unavailable"


class BlobNotFound(KeyError):
    """A storage key that holds nothing (a bug or a race, never a client error by itself)."""


class TooManyActiveJobs(ServiceError):
    """A user's queued and running jobs of one queue are at the limit (`max_active_jobs_per_user`)."""

    status, title, type_slug = 429, "Too many active jobs", "too-many-active-jobs"

    def __init__(self, queue: str, limit: int) -> None:
        super().__init__(f"At most {limit} queued or running {queue} jobs per user; wait for one to finish.",
                         headers={"Retry-After": "30"})  # fmt: skip
        self.queue, self.limit = queue, limit

    def extra(self) -> dict[str, Any]:
        return {"limit": self.limit, "queue": self.queue}
