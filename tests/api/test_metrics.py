"""/metrics for autoscalers: queue depth in the broker and the database, running jobs, the oldest queued job's age,
worker liveness; read through a per-process cache, and still a 200 when the broker or the database is away."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy import event, update

from api.app import create_app
from api.metrics import Cached, Metrics
from core.db import session_scope
from core.runtime import build_runtime
from models import CANCELED, RUNNING, Job, utcnow
from tests.conftest import auth, drop_waiting_jobs

WORKER = 'gpu-"7"\\a\nb:1:2'  # a quote, a backslash and a newline: each must be escaped in the label


def generation(client: httpx.Client, user: dict[str, str]) -> str:
    response = client.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def set_job(runtime: Any, job_id: str, **values: Any) -> None:
    with session_scope(runtime.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


@pytest.fixture
def inference_jobs(client: httpx.Client, user: dict[str, str], runtime: Any) -> Iterator[list[str]]:
    """Two generations queued on an inference queue nothing else waits on (broker and database); canceled after."""
    drop_waiting_jobs(runtime, "inference")
    ids = [generation(client, user), generation(client, user)]
    yield ids
    for job_id in ids:
        set_job(runtime, job_id, status=CANCELED, finished_at=utcnow())
    drop_waiting_jobs(runtime, "inference")


def test_queue_depth_running_jobs_and_worker_liveness(runtime: Any, inference_jobs: list[str]) -> None:
    metrics = Metrics(runtime, cache_seconds=0)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("svdiff_broker_queue_messages", queue="inference") == 2
    assert sample("svdiff_jobs_queued", queue="inference") == 2
    assert sample("svdiff_broker_queue_messages", queue="webhooks") is not None  # every queue, jobs or not
    running_before = sample("svdiff_jobs_running", queue="inference")
    seen_before = sample("svdiff_workers_seen", queue="inference")
    assert running_before is not None and seen_before is not None

    waiting, held = inference_jobs
    set_job(runtime, waiting, created_at=utcnow() - timedelta(seconds=1000))
    now = utcnow()
    set_job(runtime, held, status=RUNNING, worker_id=WORKER, heartbeat_at=now - timedelta(seconds=42), started_at=now)
    assert sample("svdiff_jobs_queued", queue="inference") == 1
    assert 1000 <= (sample("svdiff_jobs_oldest_queued_age_seconds", queue="inference") or 0) < 1100
    assert sample("svdiff_jobs_running", queue="inference") == running_before + 1
    assert 42 <= (sample("svdiff_worker_heartbeat_age_seconds", worker=WORKER, queue="inference") or 0) < 140
    assert sample("svdiff_workers_seen", queue="inference") == seen_before + 1
    assert sample("svdiff_metrics_source_up", source="database") == 1
    assert sample("svdiff_metrics_source_up", source="broker") == 1

    text = generate_latest(metrics.registry).decode()
    assert 'svdiff_worker_heartbeat_age_seconds{queue="inference",worker="gpu-\\"7\\"\\\\a\\nb:1:2"}' in text
    for name in ("svdiff_jobs_queued", "svdiff_broker_queue_messages", "svdiff_workers_seen"):
        assert f"# HELP {name} " in text and f"# TYPE {name} gauge" in text


def test_the_metrics_endpoint_serves_them(client: httpx.Client) -> None:
    text = client.get("/metrics").text
    assert 'svdiff_jobs_queued{queue="training"}' in text and 'svdiff_broker_queue_messages{queue="training"}' in text


def test_scrapes_read_the_database_once_per_cache_period(runtime: Any) -> None:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM jobs" in statement:
            statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        cached = Metrics(runtime, cache_seconds=60)
        for _ in range(3):
            generate_latest(cached.registry)
        assert len(statements) == 4  # one read of the four grouped queries, for three scrapes
        uncached = Metrics(runtime, cache_seconds=0)
        for _ in range(3):
            generate_latest(uncached.registry)
        assert len(statements) == 4 + 3 * 4
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)


def test_a_failed_read_is_cached_too() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)

    cache: Cached[int] = Cached(down, seconds=60)
    assert cache.get() is None and cache.get() is None
    assert len(calls) == 1  # a dependency that is down is not asked again by every scrape


@pytest.mark.parametrize(
    ("broken", "missing", "present"),
    [
        ({"broker_url": "redis://127.0.0.1:1/0"}, "svdiff_broker_queue_messages", "svdiff_jobs_queued"),
        ({"database_url": "postgresql+psycopg://root@127.0.0.1:1/none"}, "svdiff_jobs_queued",
         "svdiff_broker_queue_messages"),
    ],
)  # fmt: skip
def test_a_dependency_that_does_not_answer_drops_its_series_not_the_scrape(
    runtime: Any, caplog: pytest.LogCaptureFixture, broken: dict[str, str], missing: str, present: str
) -> None:
    broken_runtime = build_runtime(runtime.settings.model_copy(update=broken))
    try:
        with caplog.at_level(logging.WARNING), TestClient(create_app(broken_runtime)) as api:
            response = api.get("/metrics")
    finally:
        broken_runtime.close()
    assert response.status_code == 200
    assert f"{missing}{{" not in response.text and f"{present}{{" in response.text
    source = "broker" if "broker_url" in broken else "database"
    assert f'svdiff_metrics_source_up{{source="{source}"}} 0.0' in response.text
    assert any(record.levelno == logging.WARNING and source in record.getMessage() for record in caplog.records)


def test_an_empty_metrics_token_is_no_token(runtime: Any) -> None:
    """docker-compose passes `SVDIFF_METRICS_TOKEN=` when none is set: production must keep /metrics off, not
    serve it to an empty bearer."""
    settings = runtime.settings.model_copy(update={"environment": "production", "metrics_token": ""})
    api = TestClient(create_app(dataclasses.replace(runtime, settings=settings)))
    assert api.get("/metrics").status_code == 404
    assert api.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
