"""Fair ordering across users (issue 10, item 8): a user's n-th waiting job runs in the n-th round from the head of
the queue, so one user's backlog interleaves with other users' jobs instead of running before them. Workers
claim in that order whatever job a message names, and queue positions count in it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from core.db import session_scope
from core.queue_depth import queue_length
from models import Job, utcnow
from tests.conftest import auth, drop_waiting_jobs, make_user
from tests.worker.fake_method import FakeMethod
from worker.lifecycle import claim_next, run_next
from worker.reconciler import reconcile
from worker.tasks.inference import inference_handlers


def generate(client: httpx.Client, user: dict[str, str], name: str) -> str:
    response = client.post("/v1/generations", json={"prompt": name, "steps": 2}, headers=auth(user))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def position(client: httpx.Client, user: dict[str, str], job_id: str) -> int:
    return int(client.get(f"/v1/generations/{job_id}", headers=auth(user)).json()["queue_position"])


def test_a_backlog_interleaves_with_other_users_jobs(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    heavy, light = make_user(client), make_user(client)
    a = [generate(client, heavy, f"a{i}") for i in range(3)]
    b = [generate(client, light, f"b{i}") for i in range(2)]
    fair = [a[0], b[0], a[1], b[1], a[2]]  # first in, first out would run a0 a1 a2 b0 b1
    owner = {job: heavy for job in a} | {job: light for job in b}
    assert [position(client, owner[job], job) for job in fair] == [0, 1, 2, 3, 4]
    claimed = []
    for _ in fair:
        job = claim_next(runtime, "inference", b[1], "w1")  # every message names b1: the database decides
        assert job is not None
        claimed.append(job.id)
    assert claimed == fair
    assert claim_next(runtime, "inference", b[1], "w1") is None  # a spare message finds nothing


def test_a_newcomer_joins_the_head_round(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    heavy, newcomer = make_user(client), make_user(client)
    backlog = [generate(client, heavy, f"a{i}") for i in range(4)]
    assert claim_next(runtime, "inference", backlog[0], "w1") is not None  # a0 runs; a1 heads the queue
    late = generate(client, newcomer, "late")
    assert position(client, newcomer, late) == 1  # after a1 (same round), before a2 and a3
    assert [position(client, heavy, job) for job in backlog[1:]] == [0, 2, 3]


def test_a_message_runs_the_first_job_in_line_not_the_one_it_names(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    drop_waiting_jobs(runtime, "inference")
    first = generate(client, user, "first")
    second = generate(client, user, "second")
    assert run_next(runtime, "inference", second, "w1", inference_handlers(runtime)) == "succeeded"
    assert client.get(f"/v1/generations/{first}", headers=auth(user)).json()["status"] == "succeeded"
    assert client.get(f"/v1/generations/{second}", headers=auth(user)).json()["status"] == "queued"


def test_a_redelivered_message_takes_over_its_silent_job_first(
    client: httpx.Client, user: dict[str, str], runtime: Any
) -> None:
    drop_waiting_jobs(runtime, "inference")
    waiting = generate(client, user, "waiting")
    lost = generate(client, user, "lost")
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, lost)
        assert job is not None
        job.status, job.worker_id, job.attempts = "running", "killed", 1
        job.heartbeat_at = utcnow() - timedelta(hours=1)
    taken = claim_next(runtime, "inference", lost, "w2")
    assert taken is not None and taken.id == lost and taken.attempts == 2
    assert position(client, user, waiting) == 0


def test_the_reconciler_sends_only_the_missing_messages(
    client: httpx.Client, user: dict[str, str], runtime: Any
) -> None:
    drop_waiting_jobs(runtime, "training", "inference")
    jobs = [generate(client, user, f"g{i}") for i in range(3)]
    long_ago = utcnow() - timedelta(hours=2)
    with session_scope(runtime.sessions) as session:
        for job_id in jobs:
            job = session.get(Job, job_id)
            assert job is not None
            job.enqueued_at = long_ago
    assert queue_length(runtime, "inference") == 3
    assert reconcile(runtime)["resent"] == 0  # every waiting job has its message: a backlog is left alone
    with runtime.celery.connection_for_write() as connection:  # the broker restarted empty
        connection.default_channel.queue_purge("inference")
    assert reconcile(runtime)["resent"] == 3
    assert queue_length(runtime, "inference") == 3
    assert reconcile(runtime)["resent"] == 0
