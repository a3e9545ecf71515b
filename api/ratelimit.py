"""Per-API-key rate limits: every authenticated request, and separately the POSTs that create jobs.

Fixed windows counted per key (the SHA-256 of the key, never the key) and per window: in Redis when the broker is
Redis, so every API replica shares one count; in this process otherwise (embedded mode). Over the limit, a 429
problem with `Retry-After` (seconds to the window's end). A counter store that does not answer lets requests
through (logged): the limit protects the workers, and the service must not go down with its limiter.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from core.errors import ServiceError
from core.settings import Settings

log = logging.getLogger(__name__)
JOB_PATHS = frozenset({"/v1/trainings", "/v1/generations", "/v1/edits"})  # POST here creates a job


class RateLimited(ServiceError):
    status, title, type_slug = 429, "Too many requests", "rate-limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class Counter(Protocol):
    def hit(self, key: str, window: int, now: float) -> int:
        """Count one request of `key` in the window holding `now`; returns the window's count so far."""
        ...


class MemoryCounter:
    """In this process (embedded mode, tests): a dict of (key, window index) counts, pruned as windows pass."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0

    def hit(self, key: str, window: int, now: float) -> int:
        index = int(now // window)
        with self._lock:
            if index != self._pruned_at:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= index - 1}
                self._pruned_at = index
            count = self._counts.get((key, index), 0) + 1
            self._counts[(key, index)] = count
            return count


class RedisCounter:
    """Shared by every API replica: INCR of one key per window, expiring with it."""

    def __init__(self, url: str, prefix: str = "svdiff:ratelimit:") -> None:
        import redis  # the broker's client; only imported when the broker is Redis

        self.client: Any = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        self.prefix = prefix

    def hit(self, key: str, window: int, now: float) -> int:
        index = int(now // window)
        name = f"{self.prefix}{key}:{window}:{index}"
        pipe = self.client.pipeline()
        pipe.incr(name)
        pipe.expire(name, window + 1)
        count, _ = pipe.execute()
        return int(count)


class RateLimits:
    """The two limits of the settings over one counter store."""

    def __init__(self, settings: Settings, counter: Counter, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.counter, self.clock = settings, counter, clock
        self._down_until = 0.0

    def _check(self, bucket: str, api_key: str, limit: int, what: str) -> None:
        window = self.settings.rate_limit_window_seconds
        now = self.clock()
        if now < self._down_until:
            return
        key = f"{bucket}:{hashlib.sha256(api_key.encode()).hexdigest()[:32]}"
        try:
            count = self.counter.hit(key, window, now)
        except Exception as exc:  # a counter store that does not answer: let the request through
            log.warning("rate limit store unavailable (%s); not limiting for 10 s", type(exc).__name__)
            self._down_until = now + 10
            return
        if count > limit:
            retry_after = self._retry_after(now)
            raise RateLimited(f"At most {limit} {what} per {window} s per API key; retry in {retry_after} s.",
                              retry_after)

    def _retry_after(self, now: float) -> int:
        window = self.settings.rate_limit_window_seconds
        return max(1, math.ceil((int(now // window) + 1) * window - now))

    def count_failure(self, address: str) -> RateLimited | None:
        """Count a failed authentication of a client address; the 429 to answer instead of the 401 once it is over
        the limit this window."""
        window, limit, now = self.settings.rate_limit_window_seconds, self.settings.rate_limit_failures, self.clock()
        if now < self._down_until:
            return None
        key = f"fail:{hashlib.sha256(address.encode()).hexdigest()[:32]}"
        try:
            seen = self.counter.hit(key, window, now)
        except Exception as exc:
            log.warning("rate limit store unavailable (%s); not limiting for 10 s", type(exc).__name__)
            self._down_until = now + 10
            return None
        if seen <= limit:
            return None
        retry_after = self._retry_after(now)
        return RateLimited(f"At most {limit} failed authentications per {window} s from one address; retry in "
                           f"{retry_after} s.", retry_after)  # fmt: skip

    def check_request(self, api_key: str) -> None:
        self._check("req", api_key, self.settings.rate_limit_requests, "requests")

    def check_job(self, api_key: str) -> None:
        self._check("job", api_key, self.settings.rate_limit_jobs, "job-creating requests")


def make_rate_limits(settings: Settings) -> RateLimits | None:
    """None when disabled; Redis-backed when the setting (default: the broker) names Redis, else in-process."""
    if not settings.rate_limit_enabled:
        return None
    store = settings.rate_limit_storage or settings.broker_url
    counter: Counter = RedisCounter(store) if store.startswith(("redis://", "rediss://")) else MemoryCounter()
    return RateLimits(settings, counter)


def bearer_key(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def is_job_post(request: Request) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/") in JOB_PATHS


class RateLimitMiddleware:
    """Counts each request that carries a bearer key (valid or not: guessing keys is limited too)."""

    def __init__(self, limits: RateLimits, render: Callable[[Request, ServiceError], Awaitable[Response]]) -> None:
        self.limits, self.render = limits, render

    async def __call__(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        key = bearer_key(request)
        if key is not None:
            try:
                await run_in_threadpool(self.limits.check_request, key)
                if is_job_post(request):
                    await run_in_threadpool(self.limits.check_job, key)
            except RateLimited as exc:
                return await self.render(request, exc)
        return await call_next(request)
