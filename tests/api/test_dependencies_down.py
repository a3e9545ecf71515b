"""A database, broker or storage that does not answer gives 503 problems, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.runtime import build_runtime
from tests.conftest import auth


@pytest.fixture
def broken(runtime: Any, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """An API whose one dependency (the parameter) points at a closed port; the others are the real ones."""
    dependency = request.param
    changes = {
        "database": {"database_url": "postgresql+psycopg://root@127.0.0.1:1/none"},
        "broker": {"broker_url": "redis://127.0.0.1:1/0"},
        "storage": {"s3_endpoint_url": "http://127.0.0.1:1"},
    }[dependency]
    settings = runtime.settings.model_copy(update=changes)
    broken_runtime = build_runtime(settings)
    if dependency == "storage":
        broken_runtime.storage.client.meta.config.retries = {"max_attempts": 0}
    with TestClient(create_app(broken_runtime), raise_server_exceptions=False) as client:
        yield client
    broken_runtime.close()


@pytest.mark.parametrize("broken", ["database", "broker", "storage"], indirect=True)
def test_readyz_names_the_dependency(broken: TestClient, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.params["broken"]
    response = broken.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"][name].startswith("unavailable")
    assert broken.get("/healthz").status_code == 200


@pytest.mark.parametrize("broken", ["database"], indirect=True)
def test_database_down_is_503(broken: TestClient, user: dict[str, str]) -> None:
    response = broken.get("/v1/me", headers=auth(user))
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("broken", ["storage"], indirect=True)
def test_storage_down_is_503(broken: TestClient, client: httpx.Client, user: dict[str, str]) -> None:
    subject = client.post("/v1/subjects", json={"name": "a", "class_word": "dog"}, headers=auth(user)).json()
    from tests.images import dog

    files = [("files", ("a.jpg", dog(0), "image/jpeg"))]
    response = broken.post(f"/v1/subjects/{subject['id']}/photos", files=files, headers=auth(user))
    assert response.status_code == 503
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 0


@pytest.mark.parametrize("broken", ["broker"], indirect=True)
def test_broker_down_keeps_the_job_for_the_reconciler(broken: TestClient, user: dict[str, str]) -> None:
    response = broken.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user))
    assert response.status_code == 202 and response.json()["status"] == "queued"
