"""Hostile or unusual input: every answer is a problem document with a 4xx status, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import subject_with_photos
from tests.conftest import auth

NUL = "\x00"


def cursor(created_at: str, id_: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, id_]).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/subjects/%00"),
        ("DELETE", "/v1/subjects/%00"),
        ("GET", "/v1/subjects/%00/photos"),
        ("GET", "/v1/trainings/%00"),
        ("POST", "/v1/trainings/%00/cancel"),
        ("GET", "/v1/generations/%00"),
        ("POST", "/v1/generations/%00/cancel"),
        ("GET", "/v1/edits/%00"),
        ("GET", "/v1/checkpoints/%00"),
        ("GET", "/v1/checkpoints/%00/file"),
    ],
)
def test_nul_in_a_path_id_is_404(client: httpx.Client, user: dict[str, str], method: str, path: str) -> None:
    response = client.request(method, path, headers=auth(user))
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_nul_in_a_photo_id_is_404(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    response = client.delete(f"/v1/subjects/{subject['id']}/photos/%00", headers=auth(user))
    assert response.status_code == 404, response.text


def test_nul_in_body_ids_is_404_like_any_unknown_id(client: httpx.Client, user: dict[str, str]) -> None:
    generation = client.post(
        "/v1/generations", json={"prompt": "a dog", "checkpoints": [{"id": "é" + NUL}]}, headers=auth(user)
    )
    assert generation.status_code == 404, generation.text
    training = client.post("/v1/trainings", json={"subject_ids": [NUL]}, headers=auth(user))
    assert training.status_code == 404, training.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/subjects", {"name": "a" + NUL, "class_word": "dog"}, "name"),
        ("/v1/generations", {"prompt": "a" + NUL}, "prompt"),
        ("/v1/generations", {"prompt": "a", "negative_prompt": NUL}, "negative_prompt"),
        ("/v1/generations", {"prompt": "a", "webhook_url": "https://example.com/" + NUL}, "webhook_url"),
    ],
)
def test_nul_in_a_text_field_is_422(
    client: httpx.Client, user: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json=body, headers=auth(user))
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_nul_in_a_user_name_is_422(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/users", json={"name": "a" + NUL}, headers=admin_headers)
    assert response.status_code == 422, response.text


def test_nul_in_a_multipart_field_is_422(client: httpx.Client, user: dict[str, str]) -> None:
    response = client.post(
        "/v1/edits", data={"source_prompt": "a" + NUL, "target_prompt": "b"},
        files=[("file", ("a.jpg", b"not read", "image/jpeg"))], headers=auth(user),
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["source_prompt"]


def test_nul_in_the_admin_user_filter_matches_no_one(client: httpx.Client, admin_headers: dict[str, str]) -> None:
    response = client.get("/v1/admin/subjects", params={"user_id": NUL}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("id_", ["a" + NUL, 1, ["x"], None])
def test_a_cursor_id_must_be_a_string_without_nul(client: httpx.Client, user: dict[str, str], id_: Any) -> None:
    response = client.get(
        "/v1/subjects", params={"cursor": cursor("2020-01-01T00:00:00+00:00", id_)}, headers=auth(user)
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "cursor"


def test_a_value_the_database_refuses_is_422_not_500() -> None:
    """The safety net behind validation: a DataError that slips through is the client's input, not a crash."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import DataError

    from api import errors

    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise DataError("INSERT ...", {}, ValueError("string literal cannot contain NUL (0x00) characters"))

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_a_concurrent_request_with_the_same_idempotency_key_is_409_and_creates_nothing(
    client: httpx.Client, user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other request saves its key between this one's replay check and its save (made deterministic here)."""
    from api.services import jobs
    from core.db import session_scope
    from models import IdempotencyRecord

    create = jobs.create_generation

    def racing(session: Any, rt: Any, owner: Any, body: Any) -> Any:
        with session_scope(runtime.sessions) as other:
            other.add(IdempotencyRecord(user_id=owner.id, key="race", request_hash="h", status_code=202,
                                        response_body="{}"))  # fmt: skip
        return create(session, rt, owner, body)

    monkeypatch.setattr(jobs, "create_generation", racing)
    headers = {**auth(user), "Idempotency-Key": "race"}
    response = client.post("/v1/generations", json={"prompt": "a dog"}, headers=headers)
    assert response.status_code == 409, response.text
    assert "in progress" in response.json()["detail"]
    assert client.get("/v1/generations", headers=auth(user)).json()["data"] == []


@pytest.fixture
def token_race(runtime: Any) -> Iterator[list[str]]:
    """Just before this request inserts its first subject, another request commits one with the same token."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from core.db import session_scope
    from models import Subject

    raced: list[str] = []

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        new = [o for o in session.new if isinstance(o, Subject)]
        if new and not raced:
            raced.append(new[0].token)
            with session_scope(runtime.sessions) as other:
                other.add(Subject(user_id=new[0].user_id, name="other", class_word="dog", token=new[0].token))

    event.listen(Session, "before_flush", before_flush)
    yield raced
    event.remove(Session, "before_flush", before_flush)


def test_a_default_token_taken_concurrently_makes_the_next_one_be_picked(
    client: httpx.Client, user: dict[str, str], token_race: list[str]
) -> None:
    response = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user))
    assert response.status_code == 201, response.text
    assert token_race and response.json()["token"] != token_race[0]
    assert len(client.get("/v1/subjects", headers=auth(user)).json()["data"]) == 2


def test_an_explicit_token_taken_concurrently_is_409(
    client: httpx.Client, user: dict[str, str], token_race: list[str]
) -> None:
    body = {"name": "Rex", "class_word": "dog", "token": "mydog"}
    response = client.post("/v1/subjects", json=body, headers=auth(user))
    assert response.status_code == 409, response.text
    assert token_race == ["mydog"]
    assert len(client.get("/v1/subjects", headers=auth(user)).json()["data"]) == 1


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"prompt":', "body"),  # a JSON syntax error: its location is a character offset, not a field
        (b'{"prompt": "a", "steps": 0}', "steps"),
        (b'{"prompt": "a", "checkpoints": [{"id": "x", "scale": 9}]}', "checkpoints.0.scale"),
    ],
)
def test_every_422_has_one_title_and_names_a_field(
    client: httpx.Client, user: dict[str, str], content: bytes, field: str
) -> None:
    headers = {**auth(user), "content-type": "application/json"}
    response = client.post("/v1/generations", content=content, headers=headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["title"] == "Invalid input" and problem["type"].endswith("/invalid-input")
    assert problem["errors"][0]["field"] == field
    service_error = client.post("/v1/subjects", json={"name": "a", "class_word": "Dog!"}, headers=auth(user))
    assert service_error.json()["title"] == problem["title"]
