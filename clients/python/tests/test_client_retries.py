from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from mockapi import MockApi, job_json, json_response, problem
from svdiff_client import ApiConnectionError, RateLimited, RetryPolicy, ServiceUnavailable


def me() -> httpx.Response:
    return json_response({"id": "u-1", "name": "n", "role": "user", "created_at": "2025-01-01T00:00:00Z"})


def test_429_waits_the_retry_after_it_was_told(api: MockApi) -> None:
    api.on("GET", "/v1/me", problem(429, headers={"Retry-After": "7"}), problem(503, headers={"Retry-After": "2"}),
           me())  # fmt: skip
    sleeps: list[float] = []
    with api.client(sleeps) as client:
        assert client.me().id == "u-1"
    assert sleeps == [7.0, 2.0]
    assert len(api.requests) == 3


def test_without_retry_after_the_backoff_grows_with_jitter(api: MockApi) -> None:
    api.on("GET", "/v1/me", problem(503), problem(503), problem(503), me())
    sleeps: list[float] = []
    policy = RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=100.0)
    with api.client(sleeps, retry=policy) as client:
        client.me()
    assert len(sleeps) == 3
    for retry, delay in enumerate(sleeps):  # half of 2^retry, plus up to the other half
        assert 2**retry / 2 <= delay <= 2**retry


def test_retries_are_bounded_and_the_last_answer_is_raised(api: MockApi) -> None:
    api.on("GET", "/v1/me", problem(429, "slow down", headers={"Retry-After": "1"}))
    sleeps: list[float] = []
    with api.client(sleeps, max_retries=2) as client, pytest.raises(RateLimited) as caught:
        client.me()
    assert len(api.requests) == 3 and sleeps == [1.0, 1.0]
    assert caught.value.retry_after == 1.0 and caught.value.detail == "slow down"


def test_a_retry_after_beyond_the_cap_is_raised_at_once(api: MockApi) -> None:
    api.on("GET", "/v1/me", problem(503, headers={"Retry-After": "3600"}), me())
    with api.client(retry=RetryPolicy(max_retry_after=60)) as client, pytest.raises(ServiceUnavailable) as caught:
        client.me()
    assert caught.value.retry_after == 3600 and len(api.requests) == 1


def test_other_errors_are_not_retried(api: MockApi) -> None:
    api.on("POST", "/v1/trainings", problem(409, "no photos"), job_json())
    with api.client() as client, pytest.raises(Exception, match="no photos"):
        client.trainings.create(["s-1"])
    assert len(api.requests) == 1


def test_a_job_creation_keeps_one_idempotency_key_across_its_retries(api: MockApi) -> None:
    api.on("POST", "/v1/generations", problem(503), httpx.ReadError("connection reset"), problem(429),
           json_response(job_json("generation"), 202))  # fmt: skip
    with api.client() as client:
        generation = client.generations.create("a photo of sks dog")
        again = client.generations.create("a photo of sks dog")
    assert generation.kind == "generation" and again.kind == "generation"
    keys = [r.headers["Idempotency-Key"] for r in api.requests]
    assert len(keys) == 5 and len(set(keys[:4])) == 1 and keys[4] != keys[0]  # the next call: a new key
    assert uuid.UUID(keys[0]).version == 4


def test_the_callers_idempotency_key_is_sent(api: MockApi) -> None:
    api.on("POST", "/v1/trainings", json_response(job_json(), 202))
    api.on("POST", "/v1/edits", json_response(job_json("edit"), 202))
    with api.client() as client:
        client.trainings.create(["s-1"], idempotency_key="mine-1")
        client.edits.create(b"\x89PNG\r\n\x1a\nrest", "a dog", "a cat", idempotency_key="mine-2")
    assert [r.headers["Idempotency-Key"] for r in api.requests] == ["mine-1", "mine-2"]


def test_multipart_bodies_are_sent_again_whole(api: MockApi) -> None:
    api.on("POST", "/v1/edits", problem(503), json_response(job_json("edit"), 202))
    with api.client() as client:
        client.edits.create(b"\xff\xd8\xffjpeg-bytes", "a dog", "a cat", steps=20)
    first, second = api.requests

    def body(request: httpx.Request) -> bytes:  # without its random multipart boundary
        boundary = request.headers["content-type"].split("boundary=")[1].encode()
        return request.content.replace(boundary, b"B")

    assert body(first) == body(second) and b"jpeg-bytes" in body(second) and b"a cat" in body(second)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_connection_errors_are_retried_for_idempotent_requests(api: MockApi) -> None:
    api.on("GET", "/v1/me", httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("closed"), me())
    api.on("DELETE", "/v1/subjects/s-1", httpx.ReadError("reset"), httpx.Response(204))
    with api.client() as client:
        assert client.me().id == "u-1"
        client.subjects.delete("s-1")
    assert len(api.requests) == 5


def test_a_post_that_may_have_arrived_is_not_repeated(api: MockApi) -> None:
    api.on("POST", "/v1/subjects", httpx.ReadError("reset"), json_response({}, 201))
    with api.client() as client, pytest.raises(ApiConnectionError):
        client.subjects.create("Rex", "dog")
    assert len(api.requests) == 1


def test_a_post_that_never_left_is_retried(api: MockApi) -> None:
    subject = {"id": "s-1", "name": "Rex", "class_word": "dog", "token": "sks", "photo_count": 0,
               "created_at": "2025-01-01T00:00:00Z"}  # fmt: skip
    api.on("POST", "/v1/subjects", httpx.ConnectError("refused"), json_response(subject, 201))
    with api.client() as client:
        assert client.subjects.create("Rex", "dog").token == "sks"
    assert len(api.requests) == 2


def test_connection_errors_past_the_retries_raise_typed(api: MockApi) -> None:
    api.on("GET", "/v1/me", httpx.ConnectError("refused"))
    with api.client(max_retries=1) as client, pytest.raises(ApiConnectionError, match="ConnectError"):
        client.me()
    assert len(api.requests) == 2


def test_async_retries_honour_retry_after_and_keep_the_key(api: MockApi) -> None:
    api.on("POST", "/v1/trainings", problem(429, headers={"Retry-After": "3"}), httpx.ConnectError("refused"),
           json_response(job_json(), 202))  # fmt: skip
    sleeps: list[float] = []

    async def run() -> None:
        async with api.async_client(sleeps) as client:
            training = await client.trainings.create(["s-1"], steps=100)
            assert training.status == "queued"

    asyncio.run(run())
    assert sleeps[0] == 3.0 and len(sleeps) == 2
    assert len({r.headers["Idempotency-Key"] for r in api.requests}) == 1 and len(api.requests) == 3
