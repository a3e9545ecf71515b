from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import finished_checkpoint, subject_with_photos, train
from tests.conftest import auth


def test_admin_subjects_with_owner_and_checkpoint_totals(
    client: httpx.Client, admin_headers: dict[str, str], user: dict[str, str], runtime: Any
) -> None:
    subject = subject_with_photos(client, user, count=2)
    training = train(client, user, [subject["id"]]).json()
    finished_checkpoint(runtime, training["id"], b"x" * 123)
    response = client.get(f"/v1/admin/subjects?user_id={user['id']}", headers=admin_headers)
    assert response.status_code == 200
    (row,) = response.json()["data"]
    assert row["id"] == subject["id"] and row["owner"]["id"] == user["id"]
    assert row["photo_count"] == 2 and row["checkpoint_count"] == 1 and row["checkpoint_bytes"] == 123
    assert row["last_trained_at"] is not None
    everyone = client.get("/v1/admin/subjects?limit=100", headers=admin_headers).json()["data"]
    assert subject["id"] in {s["id"] for s in everyone}


def test_admin_jobs_filters(client: httpx.Client, admin_headers: dict[str, str], user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user))
    canceled = client.get("/v1/admin/jobs?status=canceled&kind=training&limit=100", headers=admin_headers).json()
    assert training["id"] in {j["id"] for j in canceled["data"]}
    assert all(j["status"] == "canceled" and j["kind"] == "training" for j in canceled["data"])
    assert canceled["data"][0]["user_id"]
    assert client.get("/v1/admin/jobs?status=sleeping", headers=admin_headers).status_code == 422
    assert client.get("/v1/admin/jobs?limit=0", headers=admin_headers).status_code == 422
    assert client.get("/v1/admin/jobs?cursor=%%%", headers=admin_headers).status_code == 422


def test_admin_stats(client: httpx.Client, admin_headers: dict[str, str], user: dict[str, str]) -> None:
    subject = subject_with_photos(client, user)
    train(client, user, [subject["id"]])
    stats = client.get("/v1/admin/stats", headers=admin_headers).json()
    assert stats["jobs"]["training"]["queued"] >= 1
    assert stats["storage_bytes"]["photos"] > 0
    assert stats["storage_bytes"]["total"] == sum(v for k, v in stats["storage_bytes"].items() if k != "total")
    assert isinstance(stats["workers"], list)


def test_admin_endpoints_refuse_users_and_anonymous(client: httpx.Client, user: dict[str, str]) -> None:
    for path in ("/v1/admin/subjects", "/v1/admin/jobs", "/v1/admin/stats"):
        assert client.get(path, headers=auth(user)).status_code == 403
        assert client.get(path).status_code == 401


@pytest.mark.parametrize("query", ["user_id=&cursor=&limit=", "user_id&limit"])
def test_empty_query_values_mean_absent(client: httpx.Client, admin_headers: dict[str, str], query: str) -> None:
    assert client.get(f"/v1/admin/subjects?{query}", headers=admin_headers).status_code == 200
    jobs = client.get("/v1/admin/jobs?status=&kind=&limit=1", headers=admin_headers)
    assert jobs.status_code == 200 and len(jobs.json()["data"]) <= 1
