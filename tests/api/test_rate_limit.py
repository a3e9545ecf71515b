"""Rate limits per API key (429 problem+json with Retry-After): in-process when embedded, shared in Redis by API
replicas when the broker is Redis, a separate limit for job-creating POSTs, and a switch to turn them off."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.ratelimit import MemoryCounter, RateLimited, RateLimits, RedisCounter, make_rate_limits
from core.settings import Settings
from tests.conftest import REDIS_URL, auth
from tests.images import dog


def limited_client(runtime: Any, **limits: Any) -> TestClient:
    """Another API instance (a replica) over the same database and broker, with its own rate-limit settings; its
    clock stands still, so a test never straddles two windows (each test's user has a fresh key, so counts are
    never shared between tests)."""
    settings = runtime.settings.model_copy(update={"rate_limit_window_seconds": 60, **limits})
    app = create_app(dataclasses.replace(runtime, settings=settings))
    if app.state.rate_limits is not None:
        now = time.time()
        app.state.rate_limits.clock = lambda: now
    return TestClient(app)


def test_requests_over_the_limit_get_429_problem_with_retry_after(
    client: TestClient, runtime: Any, user: dict[str, str], other_user: dict[str, str]
) -> None:
    api = limited_client(runtime, rate_limit_requests=3, rate_limit_storage="memory://")
    assert [api.get("/v1/me", headers=auth(user)).status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/v1/subjects", headers=auth(user))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["status"] == 429 and body["type"].endswith("/rate-limited") and body["instance"] == "/v1/subjects"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api.get("/v1/me", headers=auth(other_user)).status_code == 200  # per key
    assert api.get("/healthz").status_code == 200  # no key, not counted


def test_job_creating_posts_have_their_own_lower_limit(
    client: TestClient, runtime: Any, user: dict[str, str]
) -> None:
    api = limited_client(runtime, rate_limit_requests=100, rate_limit_jobs=2, rate_limit_storage="memory://")
    body = {"prompt": "a dog"}
    assert [api.post("/v1/generations", json=body, headers=auth(user)).status_code for _ in range(2)] == [202, 202]
    refused = api.post("/v1/generations", json=body, headers=auth(user))
    assert refused.status_code == 429 and "job-creating" in refused.json()["detail"]
    assert api.post("/v1/trainings", json={"subject_ids": ["x"]}, headers=auth(user)).status_code == 429
    assert api.get("/v1/generations", headers=auth(user)).status_code == 200  # reads are still allowed
    files = [("files", ("0.jpg", dog(0), "image/jpeg"))]
    plain = api.post("/v1/subjects", data={"name": "a", "class_word": "dog"}, files=files, headers=auth(user))
    assert plain.status_code == 201  # an upload without train=true creates no job
    shortcut = api.post(
        "/v1/subjects", data={"name": "b", "class_word": "dog", "train": "true"}, files=files, headers=auth(user)
    )
    assert shortcut.status_code == 429 and "Retry-After" in shortcut.headers


def test_replicas_share_the_count_in_redis(
    client: TestClient, runtime: Any, user: dict[str, str]
) -> None:
    assert runtime.settings.broker_url.startswith("redis://")
    first, second = (limited_client(runtime, rate_limit_requests=4) for _ in range(2))
    assert isinstance(first.app.state.rate_limits.counter, RedisCounter)  # type: ignore[attr-defined]
    codes = [api.get("/v1/me", headers=auth(user)).status_code for api in (first, second, first, second)]
    assert codes == [200, 200, 200, 200]
    assert second.get("/v1/me", headers=auth(user)).status_code == 429
    assert first.get("/v1/me", headers=auth(user)).status_code == 429


def test_disabled(client: TestClient, runtime: Any, user: dict[str, str]) -> None:
    api = limited_client(runtime, rate_limit_enabled=False, rate_limit_requests=1, rate_limit_jobs=1)
    assert api.app.state.rate_limits is None  # type: ignore[attr-defined]
    assert {api.get("/v1/me", headers=auth(user)).status_code for _ in range(5)} == {200}


def test_a_new_window_allows_again() -> None:
    now = [120.5]
    settings = Settings(rate_limit_requests=2, rate_limit_window_seconds=10, _env_file=None)  # type: ignore[call-arg]
    limits = RateLimits(settings, MemoryCounter(), clock=lambda: now[0])
    limits.check_request("k")
    limits.check_request("k")
    with pytest.raises(RateLimited) as caught:
        limits.check_request("k")
    assert caught.value.retry_after == 10 and caught.value.headers["Retry-After"] == "10"
    now[0] = 129.2
    with pytest.raises(RateLimited) as caught:
        limits.check_request("k")
    assert caught.value.retry_after == 1
    now[0] = 130.0
    limits.check_request("k")


def test_embedded_mode_counts_in_process_and_redis_mode_in_redis() -> None:
    embedded = make_rate_limits(Settings(_env_file=None))  # type: ignore[call-arg]
    assert embedded is not None and isinstance(embedded.counter, MemoryCounter)
    shared = make_rate_limits(Settings(broker_url=REDIS_URL, secret_key="r" * 40, _env_file=None))  # type: ignore[call-arg]
    assert shared is not None and isinstance(shared.counter, RedisCounter)


def test_a_limiter_store_that_is_down_lets_requests_through(
    client: TestClient, runtime: Any, user: dict[str, str]
) -> None:
    api = limited_client(runtime, rate_limit_requests=1, rate_limit_storage="redis://127.0.0.1:9/0")
    assert {api.get("/v1/me", headers=auth(user)).status_code for _ in range(3)} == {200}



def test_openapi_documents_the_429(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "Retry-After" in paths["/v1/generations"]["post"]["responses"]["429"]["headers"]
    assert "429" not in paths["/healthz"]["get"]["responses"]
