"""A queued job's ETA: its place in line over its queue's measured throughput (jobs finished lately)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import httpx

from core.db import session_scope
from core.throughput import QueueThroughput
from core.views import Presenter
from models import Generation, utcnow
from tests.conftest import make_user


def add_jobs(runtime: Any, user_id: str, queue: str, status: str, count: int, finished_ago: float = 60.0) -> list[str]:
    with session_scope(runtime.sessions) as session:
        jobs = [Generation(user_id=user_id, queue=queue, status=status, params={}) for _ in range(count)]
        for job in jobs:
            if status != "queued":
                job.finished_at = utcnow() - timedelta(seconds=finished_ago)
        session.add_all(jobs)
        session.flush()
        return [job.id for job in jobs]


def test_the_rate_is_jobs_finished_within_the_window(client: httpx.Client, runtime: Any) -> None:
    user, queue = make_user(client), f"eta-{secrets.token_hex(3)}"
    throughput = QueueThroughput(window=600.0, ttl=0.0)
    with runtime.sessions() as session:
        assert throughput.jobs_per_second(session, queue) is None  # nothing finished: no ETA rather than a guess
    add_jobs(runtime, user["id"], queue, "succeeded", 5)
    add_jobs(runtime, user["id"], queue, "failed", 1)
    add_jobs(runtime, user["id"], queue, "canceled", 4)  # canceled jobs took no worker time
    add_jobs(runtime, user["id"], queue, "succeeded", 7, finished_ago=3600)  # outside the window
    with runtime.sessions() as session:
        assert throughput.jobs_per_second(session, queue) == 6 / 600
        assert throughput.queued_eta(session, queue, position=2) == 300.0  # 3 jobs to finish at 1 per 100 s


def test_a_measured_rate_is_kept_for_its_ttl(client: httpx.Client, runtime: Any) -> None:
    user, queue = make_user(client), f"eta-{secrets.token_hex(3)}"
    throughput = QueueThroughput(window=600.0, ttl=3600.0)
    add_jobs(runtime, user["id"], queue, "succeeded", 2)
    with runtime.sessions() as session:
        first = throughput.jobs_per_second(session, queue)
        add_jobs(runtime, user["id"], queue, "succeeded", 2)
        assert throughput.jobs_per_second(session, queue) == first  # one count per queue per ttl, not per read


def test_a_queued_job_shows_its_eta(client: httpx.Client, runtime: Any) -> None:
    user, queue = make_user(client), f"eta-{secrets.token_hex(3)}"
    add_jobs(runtime, user["id"], queue, "succeeded", 9)
    [waiting] = add_jobs(runtime, user["id"], queue, "queued", 1)
    with runtime.sessions() as session:
        job = session.get(Generation, waiting)
        assert job is not None
        out = Presenter(session, runtime.storage, runtime.settings).job(job)
    assert out.queue_position == 0 and out.eta_seconds == 100.0  # 1 job at 9 per 900 s
