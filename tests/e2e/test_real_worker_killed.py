"""SIGKILL of a training worker running the real method: the message is redelivered, the next worker resumes
from the state the first one saved (not from step 0), and the training succeeds."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from core import keys
from models import Checkpoint
from svdiff.checkpoint import deserialize
from svdiff.state import TrainState
from tests.conftest import auth, start_worker, stop_worker
from tests.e2e.conftest import dog_photos, purge, real_worker_env, wait_job, worker_alive
from tests.worker.test_worker_killed import heartbeat_stale, job_row, wait_until

STEPS = 300
KILL_AFTER = 8  # states are saved every 2 steps


def test_killed_real_training_is_redelivered_and_resumes(
    client: httpx.Client, user: dict[str, str], runtime: Any, service_env: dict[str, str], tiny_base: Path,
    e2e_data: Path,
) -> None:  # fmt: skip
    purge(runtime, "training")
    env = real_worker_env(
        tiny_base, e2e_data / "svd-tiny",
        SVDIFF_CHECKPOINT_EVERY_STEPS="2", SVDIFF_HEARTBEAT_TIMEOUT_SECONDS="5",
        SVDIFF_BROKER_VISIBILITY_TIMEOUT="10", SVDIFF_PROGRESS_INTERVAL_SECONDS="0",
        # look for unacknowledged messages past their visibility timeout every second, not every 100 s
        SVDIFF_BROKER_TRANSPORT_OPTIONS='{"unacked_restore_interval": 1, "unacked_restore_throttle": 1}',
    )  # fmt: skip
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in dog_photos()]
    subject = client.post("/v1/subjects", data={"name": "Rex", "class_word": "dog"}, files=files,
                          headers=auth(user)).json()
    training = client.post("/v1/trainings", json={"subject_ids": [subject["id"]], "steps": STEPS},
                           headers=auth(user)).json()
    state_key = keys.training_state(training["id"])
    first = start_worker(service_env, "training", env, name="real-kill-a")
    try:
        alive = worker_alive(first, e2e_data / "real-kill-a.log")

        def past_kill_point() -> bool:
            alive()
            return job_row(runtime, training["id"]).progress_step >= KILL_AFTER

        wait_until(past_kill_point, 180, f"the training to pass step {KILL_AFTER}")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        stop_worker(first)
    killed = job_row(runtime, training["id"])
    assert killed.status == "running" and killed.attempts == 1
    assert killed.progress_step < STEPS, "the training ended before the kill; make it longer"
    # what the next attempt resumes from; it may be one save ahead of the progress row the worker wrote last
    saved_step = TrainState.from_bytes(runtime.storage.get(state_key)).step
    assert KILL_AFTER <= saved_step < STEPS
    wait_until(lambda: heartbeat_stale(runtime, training["id"], 5), 30, "the heartbeat to go stale")
    second = start_worker(service_env, "training", env, name="real-kill-b")
    try:
        done = wait_job(client, user, f"/v1/trainings/{training['id']}", timeout=240,
                        alive=worker_alive(second, e2e_data / "real-kill-b.log"))
    finally:
        stop_worker(second)
    assert done["status"] == "succeeded", done["error"]
    row = job_row(runtime, training["id"])
    assert row.attempts == 2 and row.worker_id != killed.worker_id
    with runtime.sessions() as session:
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.training_id == training["id"]))
        assert checkpoint is not None
        assert checkpoint.meta["resumed_from"] == saved_step
        assert deserialize(runtime.storage.get(checkpoint.storage_key)).metadata.training["step"] == STEPS
    assert not runtime.storage.exists(state_key)  # removed once the checkpoint is stored
