from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from mockapi import MockApi, problem
from svdiff_client import (
    ApiError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)
from svdiff_client.errors import parse_retry_after


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict), (413, PayloadTooLarge),
     (415, UnsupportedMediaType), (422, ValidationError), (429, RateLimited), (503, ServiceUnavailable),
     (500, ServerError), (418, ApiError)],
)  # fmt: skip
def test_each_status_raises_its_class_with_the_problem_fields(api: MockApi, status: int, cls: type[ApiError]) -> None:
    api.on("GET", "/v1/subjects/s-1", problem(status, "what went wrong", queue="training"))
    with api.client(max_retries=0) as client, pytest.raises(cls) as caught:
        client.subjects.get("s-1")
    error = caught.value
    assert type(error) is cls
    assert error.status == status and error.detail == "what went wrong" and error.title == f"Title {status}"
    assert error.type == f"https://svdiff.dev/problems/{status}" and error.instance == "/v1/x"
    assert error.problem["queue"] == "training"  # extra members are kept
    assert "what went wrong" in str(error)


def test_validation_problem_carries_each_field(api: MockApi) -> None:
    errors = [{"field": "name", "detail": "too short"}, {"field": "token", "detail": "bad"}]
    api.on("POST", "/v1/subjects", problem(422, "Some fields are invalid.", errors=errors))
    with api.client() as client, pytest.raises(ValidationError) as caught:
        client.subjects.create("", "dog", token="Two Words")
    assert [(e.field, e.detail) for e in caught.value.errors] == [("name", "too short"), ("token", "bad")]
    assert "name: too short" in str(caught.value)


def test_an_answer_that_is_not_a_problem_still_raises_typed(api: MockApi) -> None:
    api.on("GET", "/v1/me", httpx.Response(502, content=b"<html>Bad gateway</html>"))
    with api.client() as client, pytest.raises(ServerError) as caught:
        client.me()
    assert caught.value.status == 502 and "Bad gateway" in caught.value.detail


def test_unknown_ids_are_path_segments_never_paths(api: MockApi) -> None:
    api.on("GET", "/v1/subjects/a%2F..%2Fb", problem(404))
    with api.client() as client, pytest.raises(NotFound):
        client.subjects.get("a/../b")
    assert api.requests[0].url.raw_path == b"/v1/subjects/a%2F..%2Fb"


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
