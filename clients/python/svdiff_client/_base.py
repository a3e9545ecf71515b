"""What the sync and async clients share: a request description (`Call`), the retry policy, URLs and headers."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from svdiff_client.errors import parse_retry_after

__version__ = "0.1.0"
T = TypeVar("T")
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 503})
# Errors where the request may have reached the server: retried only when repeating it is harmless.
MAYBE_SENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# Errors where it certainly did not: retried for any request.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

Files = list[tuple[str, tuple[str, bytes, str]]]


@dataclass
class Call(Generic[T]):
    """One API request and how to read its successful answer. Bodies are bytes in memory, so a retry sends
    exactly the same request again."""

    method: str
    path: str  # "/v1/..." under the base URL, or an absolute URL (a signed download link)
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    data: dict[str, str] | None = None
    files: Files | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS or "Idempotency-Key" in self.headers


def segment(value: object) -> str:
    """An id as one path segment (a model with an `id` is taken for its id)."""
    raw = getattr(value, "id", value)
    if not isinstance(raw, str) or not raw:
        raise TypeError(f"expected an id (a non-empty string) or an object with one, got {value!r}")
    return quote(raw, safe="")


def idempotency_headers(key: str | None) -> dict[str, str]:
    """The `Idempotency-Key` of a job-creating POST: the caller's, or a fresh uuid4 kept for all its retries."""
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def compact(**values: Any) -> dict[str, Any]:
    """The given values, without those left at None (the service then applies its defaults)."""
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class RetryPolicy:
    """429 and 503 are retried (after `Retry-After` when sent, up to `max_retry_after` seconds; otherwise after
    an exponential backoff with jitter); connection errors are retried for idempotent requests (GET, DELETE, a POST
    with an `Idempotency-Key`) and, when the request was certainly never sent, for any. At most `max_retries`
    retries."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, retry: int) -> float:
        """Delay before retry number `retry` (0-based): half of base*2^retry (capped) plus jitter up to the rest."""
        cap = min(self.backoff_max, self.backoff_base * 2.0**retry)
        return cap / 2 + random.uniform(0, cap / 2)

    def delay_after_response(self, response: httpx.Response, retry: int) -> float | None:
        if response.status_code not in RETRY_STATUSES or retry >= self.max_retries:
            return None
        wait = parse_retry_after(response.headers.get("retry-after"))
        if wait is None:
            return self.backoff(retry)
        return wait if wait <= self.max_retry_after else None

    def delay_after_error(self, exc: Exception, call: Call[Any], retry: int) -> float | None:
        if retry >= self.max_retries:
            return None
        if isinstance(exc, NOT_SENT) or (call.idempotent and isinstance(exc, MAYBE_SENT)):
            return self.backoff(retry)
        return None


class ClientConfig:
    """Base URL, key, timeout and retries; builds the keyword arguments of each httpx request."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | httpx.URL | None,
        timeout: float | httpx.Timeout | None,
        retry: RetryPolicy | None,
        max_retries: int | None,
        fallback_base_url: httpx.URL | None = None,
    ) -> None:
        """`fallback_base_url`: given when an httpx client is injected (its base URL)."""
        self.api_key = api_key if api_key is not None else os.environ.get("SVDIFF_API_KEY")
        chosen = base_url or os.environ.get("SVDIFF_BASE_URL")
        if chosen is None and fallback_base_url is not None and str(fallback_base_url):
            chosen = fallback_base_url  # an injected httpx client's own base URL
        self.base_url = str(chosen or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        # An injected httpx client keeps its own timeouts unless this client was given one.
        self.send_timeout = timeout is not None or fallback_base_url is None
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = RetryPolicy(max_retries, policy.backoff_base, policy.backoff_max, policy.max_retry_after)
        self.retry = policy
        self.user_agent = f"svdiff-client/{__version__} httpx/{httpx.__version__}"

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def _same_origin(self, url: str) -> bool:
        a, b = httpx.URL(url), httpx.URL(self.base_url)
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)

    def headers(self, url: str, extra: dict[str, str]) -> dict[str, str]:
        """The key goes only to the service itself, never to a storage host behind a signed link."""
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.api_key and self._same_origin(url):
            headers["Authorization"] = f"Bearer {self.api_key}"
        return {**headers, **extra}

    def request_args(self, call: Call[Any]) -> dict[str, Any]:
        url = self.url(call.path)
        args: dict[str, Any] = {"method": call.method, "url": url, "headers": self.headers(url, call.headers)}
        if self.send_timeout:
            args["timeout"] = self.timeout
        for name in ("params", "json", "data", "files"):
            value = getattr(call, name)
            if value is not None:
                args[name] = value
        return args


class Deadline:
    """A point in time `timeout` seconds from now (None: never)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def bound(self, delay: float) -> float:
        remaining = self.remaining()
        return delay if remaining is None else max(0.0, min(delay, remaining))


EXPORT_RETRY_S = 5.0


def export_retry_delay(response: httpx.Response) -> float:
    """How long to wait before asking again for a LoRA export that is being made (a 202)."""
    header = parse_retry_after(response.headers.get("retry-after"))
    if header is not None:
        return header
    try:
        body = response.json()
        return max(0.0, float(body.get("retry_after", EXPORT_RETRY_S)))
    except (ValueError, TypeError, AttributeError):
        return EXPORT_RETRY_S
