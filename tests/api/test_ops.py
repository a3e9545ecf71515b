from __future__ import annotations

import httpx

from tests.conftest import ADMIN_KEY


def test_health_ready_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'svdiff_http_requests_total{method="GET",route="/readyz",status="200"}' in metrics.text
    assert "svdiff_jobs" in metrics.text


def test_openapi_documents_every_route(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/subjects", "/v1/trainings", "/v1/generations", "/v1/edits", "/v1/admin/stats"):
        assert path in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/v1/subjects"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_unknown_route_and_method_are_problems(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["instance"] == "/v1/nothing"
    assert client.put("/v1/me").status_code == 401  # a body-carrying method is authenticated before routing
    wrong = client.put("/v1/me", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert wrong.status_code == 405 and wrong.json()["status"] == 405


def test_metrics_behind_a_token_and_off_in_production_without_one(runtime) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from fastapi.testclient import TestClient

    from api.app import create_app

    def api(**update: object) -> TestClient:
        return TestClient(create_app(dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=update))))

    guarded = api(metrics_token="m" * 32)
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"}).status_code == 200
    assert api(environment="production", metrics_token=None).get("/metrics").status_code == 404
