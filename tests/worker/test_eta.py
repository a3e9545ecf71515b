"""A running job's ETA is its pace since this attempt's first step: the attempt's preparation (loading the model,
making class images) is not a step, and a new attempt starts a new pace."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx

from core.db import session_scope
from models import Job, utcnow
from tests.conftest import auth, drop_waiting_jobs
from worker.lifecycle import Progress, claim_next


def eta(client: httpx.Client, user: dict[str, str], job_id: str) -> float | None:
    return client.get(f"/v1/generations/{job_id}", headers=auth(user)).json()["eta_seconds"]


def test_the_eta_counts_steps_not_the_preparation(client: httpx.Client, user: dict[str, str], runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    job_id = client.post("/v1/generations", json={"prompt": "a dog", "steps": 10}, headers=auth(user)).json()["id"]
    claimed = claim_next(runtime, "inference", job_id, "w1")
    assert claimed is not None and claimed.id == job_id
    with session_scope(runtime.sessions) as session:  # an hour of preparation before the first step
        job = session.get(Job, job_id)
        assert job is not None
        job.started_at = utcnow() - timedelta(hours=1)
    progress = Progress(runtime, job_id, "w1")
    assert progress(1, 10)
    assert eta(client, user, job_id) is None  # one step: no pace yet
    time.sleep(0.4)
    assert progress(3, 10)
    remaining = eta(client, user, job_id)
    assert remaining is not None and 1.0 <= remaining <= 5.0  # ~0.2 s a step, 7 to go; not hours

    with session_scope(runtime.sessions) as session:  # the worker is lost; the next attempt starts a new pace
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.heartbeat_at = "queued", None
    assert claim_next(runtime, "inference", job_id, "w2") is not None
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.pace_from_at is None and job.pace_from_step == 0
