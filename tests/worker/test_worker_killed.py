"""Killing the worker process during a training: the message is redelivered, the training resumes from its
saved state on another worker, and succeeds."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from models import Checkpoint, Job, utcnow
from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth, drop_waiting_jobs, start_worker, stop_worker

WORKER_ENV = {
    "FAKE_STEP_SECONDS": "0.4",
    "SVDIFF_CHECKPOINT_EVERY_STEPS": "2",
    "SVDIFF_HEARTBEAT_TIMEOUT_SECONDS": "5",
    "SVDIFF_BROKER_VISIBILITY_TIMEOUT": "10",
    "SVDIFF_PROGRESS_INTERVAL_SECONDS": "0",
    # look for unacknowledged messages past their visibility timeout every second, not every 100 s
    "SVDIFF_BROKER_TRANSPORT_OPTIONS": '{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
}


def job_row(runtime: Any, job_id: str) -> Job:
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def heartbeat_stale(runtime: Any, job_id: str, timeout_seconds: float) -> bool:
    """Another worker may take the job over only once its heartbeat is older than the timeout. A message the
    broker restores before that (its visibility timeout counts from the first delivery) is acknowledged as a
    duplicate of a live job, so a test starts the next worker only after this."""
    beat = job_row(runtime, job_id).heartbeat_at
    return beat is not None and beat < utcnow() - timedelta(seconds=timeout_seconds + 0.5)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_training_worker_is_redelivered_and_resumes(
    client: httpx.Client, user: dict[str, str], runtime: Any, service_env: dict[str, str]
) -> None:
    drop_waiting_jobs(runtime, "training")  # earlier tests' jobs: not this test's business
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]], steps=10).json()
    app = "tests.worker.fake_worker_app"
    first = start_worker(service_env, "training", WORKER_ENV, app=app, name="train-a")
    try:
        wait_until(lambda: job_row(runtime, training["id"]).progress_step >= 5, 60, "the training to pass step 4")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        stop_worker(first)
    killed = job_row(runtime, training["id"])
    assert killed.status == "running" and killed.attempts == 1
    wait_until(lambda: heartbeat_stale(runtime, training["id"], 5), 30, "the heartbeat to go stale")
    second = start_worker(service_env, "training", WORKER_ENV, app=app, name="train-b")
    try:
        wait_until(lambda: job_row(runtime, training["id"]).status != "running", 90, "the redelivered training")
    finally:
        stop_worker(second)
    done = job_row(runtime, training["id"])
    assert done.status == "succeeded", (done.error_type, done.error_detail)
    assert done.attempts == 2 and done.worker_id != killed.worker_id
    with runtime.sessions() as session:
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.training_id == training["id"]))
        assert checkpoint is not None and checkpoint.meta["resumed_from"] >= 4
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()["status"] == "succeeded"
