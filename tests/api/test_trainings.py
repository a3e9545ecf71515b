from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth


def test_create_get_list(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    response = train(client, user, [subject["id"]], steps=10, learning_rate=0.01)
    assert response.status_code == 202, response.text
    training = response.json()
    assert training["status"] == "queued" and training["progress"] == {"step": 0, "total": 10}
    assert training["subject_ids"] == [subject["id"]] and training["checkpoint_id"] is None
    assert training["params"]["learning_rate"] == 0.01 and training["params"]["prior_preservation"] is True
    assert isinstance(training["queue_position"], int) and training["error"] is None
    fetched = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert fetched["id"] == training["id"] and fetched["status"] == "queued"
    listed = client.get("/v1/trainings", headers=auth(user)).json()["data"]
    assert [t["id"] for t in listed] == [training["id"]]


def test_queue_position_counts_earlier_queued_jobs(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    first = train(client, user, [subject["id"]]).json()
    second = train(client, user, [subject["id"]]).json()
    assert second["queue_position"] > first["queue_position"]  # a round later; tests/worker/test_fair_order.py


def test_several_subjects_use_cut_mix_unmix(client: httpx.Client, user: dict[str, str]) -> None:
    a, b = subject_with_photos(client, user), subject_with_photos(client, user)
    training = train(client, user, [a["id"], b["id"]]).json()
    assert training["subject_ids"] == [a["id"], b["id"]] and training["params"]["cut_mix_unmix"] is True


def test_subject_without_photos_is_409(client: httpx.Client, user: dict[str, str]) -> None:
    subject = client.post("/v1/subjects", json={"name": "a", "class_word": "cat"}, headers=auth(user)).json()
    assert train(client, user, [subject["id"]]).status_code == 409


def test_other_users_subject_is_404(client: httpx.Client, user: dict[str, str], other_user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    assert train(client, other_user, [subject["id"]]).status_code == 404
    training = train(client, user, [subject["id"]]).json()
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(other_user)).status_code == 404
    assert client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(other_user)).status_code == 404
    assert client.get("/v1/trainings/not-an-id", headers=auth(user)).status_code == 404


@pytest.mark.parametrize(
    "fields",
    [
        {"subject_ids": []},
        {"subject_ids": ["a", "b", "c", "d"]},
        {"subject_ids": ["a", "a"]},
        {"steps": 0},
        {"steps": 10**6},
        {"learning_rate": -1},
        {"cut_mix_unmix": True},
        {"webhook_url": "ftp://example.com/hook"},
        {"webhook_url": "http://127.0.0.1:9/hook"},
        {"webhook_url": "http://169.254.169.254/latest"},
        {"webhook_url": "http://10.0.0.5/hook"},
    ],
)
def test_invalid_fields_are_422(client: httpx.Client, user: dict[str, str], fields: dict[str, Any]) -> None:
    subject = subject_with_photos(client, user)
    body = {"subject_ids": [subject["id"]], **fields}
    response = client.post("/v1/trainings", json=body, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["errors"]


def test_cancel_queued_at_once_then_conflict(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    canceled = client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user))
    assert canceled.status_code == 202 and canceled.json()["status"] == "canceled"
    assert canceled.json()["finished_at"] is not None
    assert client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user)).status_code == 409


def test_idempotency_key(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    headers = {**auth(user), "Idempotency-Key": "train-once"}
    body = {"subject_ids": [subject["id"]], "steps": 20}
    first = client.post("/v1/trainings", json=body, headers=headers)
    again = client.post("/v1/trainings", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert len(client.get("/v1/trainings", headers=auth(user)).json()["data"]) == 1
    other_body = client.post("/v1/trainings", json={**body, "steps": 21}, headers=headers)
    assert other_body.status_code == 409
    fresh = client.post("/v1/trainings", json=body, headers={**auth(user), "Idempotency-Key": "train-twice"})
    assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]


def test_no_key_is_401(client: httpx.Client) -> None:
    assert client.post("/v1/trainings", json={"subject_ids": ["x"]}).status_code == 401
    assert client.get("/v1/trainings").status_code == 401


def test_deleting_the_subject_deletes_its_trainings(client: httpx.Client, user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).status_code == 404


def test_a_cancel_racing_a_claim_does_not_overwrite_running(client: httpx.Client, user: dict[str, str],
                                                            runtime: Any) -> None:  # fmt: skip
    """A worker's claim holds the row lock while it marks the job running; a cancel arriving meanwhile waits for
    it and then asks the running job to stop, instead of overwriting running with canceled."""
    import threading
    import time

    from sqlalchemy import text

    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    locked, release = threading.Event(), threading.Event()

    def claim() -> None:
        with runtime.engine.begin() as conn:
            conn.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": training["id"]})
            conn.execute(text("UPDATE jobs SET status = 'running' WHERE id = :id"), {"id": training["id"]})
            locked.set()
            release.wait(10)

    worker = threading.Thread(target=claim)
    worker.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()  # the claim commits while the cancel waits for the lock
    started = time.monotonic()
    canceled = client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user))
    worker.join()
    assert time.monotonic() - started >= 0.4  # it did wait for the claim's lock
    assert canceled.status_code == 202, canceled.text
    assert canceled.json()["status"] == "running"
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()["status"] == "running"


def test_queued_and_running_jobs_per_user_are_capped(client: httpx.Client, runtime: Any) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.conftest import make_user

    settings = runtime.settings.model_copy(update={"max_active_jobs_per_user": {"training": 2, "inference": 1}})
    api = TestClient(create_app(dataclasses.replace(runtime, settings=settings)))
    user, other = make_user(client), make_user(client)
    subject = subject_with_photos(client, user)
    assert [train(api, user, [subject["id"]]).status_code for _ in range(2)] == [202, 202]
    refused = train(api, user, [subject["id"]])
    assert refused.status_code == 429 and refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["limit"] == 2 and refused.json()["queue"] == "training" and refused.headers["retry-after"]
    assert api.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user)).status_code == 202  # own queue
    assert api.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user)).status_code == 429
    assert train(api, other, [subject_with_photos(client, other)["id"]]).status_code == 202  # per user
    first = client.get("/v1/trainings", headers=auth(user)).json()["data"][-1]
    client.post(f"/v1/trainings/{first['id']}/cancel", headers=auth(user))  # a finished job frees its place
    assert train(api, user, [subject["id"]]).status_code == 202
