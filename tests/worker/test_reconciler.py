from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from core.db import session_scope
from core.queue_depth import queue_length
from models import Job, utcnow
from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth
from worker.reconciler import reconcile


def set_job(runtime: Any, job_id: str, **values: Any) -> None:
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        for name, value in values.items():
            setattr(job, name, value)


def enqueued_at(runtime: Any, job_id: str) -> Any:
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.enqueued_at


def status(client: httpx.Client, user: dict[str, str], job_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/trainings/{job_id}", headers=auth(user)).json())


@pytest.fixture
def training(client: httpx.Client, user: dict[str, str]) -> dict[str, Any]:
    subject = subject_with_photos(client, user)
    return dict(train(client, user, [subject["id"]]).json())


def purge_queue(runtime: Any, queue: str) -> None:
    """What a broker restarted empty (Redis FLUSHALL) leaves of a queue."""
    with runtime.celery.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def test_lost_queued_job_is_sent_again(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any]
) -> None:
    long_ago = utcnow() - timedelta(hours=2)
    set_job(runtime, training["id"], enqueued_at=long_ago)
    purge_queue(runtime, "training")
    assert queue_length(runtime, "training") == 0
    assert reconcile(runtime)["resent"] >= 1
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, training["id"])
        assert job is not None and job.enqueued_at is not None and job.enqueued_at > long_ago
    assert reconcile(runtime)["resent"] == 0  # sent once per period, not on every pass


# A backlog whose messages are all in the broker is left alone: tests/worker/test_fair_order.py.


def test_silent_worker_job_goes_back_to_the_queue(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any]
) -> None:
    set_job(
        runtime,
        training["id"],
        status="running",
        worker_id="gone",
        attempts=1,
        heartbeat_at=utcnow() - timedelta(hours=1),
    )
    assert reconcile(runtime)["requeued"] >= 1
    assert status(client, user, training["id"])["status"] == "queued"


def test_silent_worker_job_fails_when_attempts_are_spent(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any]
) -> None:
    set_job(runtime, training["id"], status="running", worker_id="gone", attempts=runtime.settings.max_job_attempts,
            heartbeat_at=utcnow() - timedelta(hours=1))  # fmt: skip
    reconcile(runtime)
    done = status(client, user, training["id"])
    assert done["status"] == "failed" and done["error"]["type"] == "WorkerLost"


def test_live_jobs_are_left_alone(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any]
) -> None:
    set_job(runtime, training["id"], status="running", worker_id="alive", attempts=1, heartbeat_at=utcnow())
    reconcile(runtime)
    assert status(client, user, training["id"])["status"] == "running"


def test_a_job_storing_its_results_is_not_taken_back(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any]
) -> None:
    """A worker writing a job's results holds its row until SUCCEEDED commits; its heartbeat may be stale by then
    (the beats stop when the work returns; the write may wait on the database or storage). The reconciler read the
    row unlocked and its requeue waited on that lock, then overwrote the final state: a succeeded job went back to
    the queue and ran again. It now skips the rows locked now."""
    import threading

    set_job(runtime, training["id"], status="running", worker_id="storing", attempts=1,
            heartbeat_at=utcnow() - timedelta(hours=1))  # fmt: skip
    holder = runtime.sessions()
    job = holder.get(Job, training["id"], with_for_update=True)  # as worker.lifecycle's store() does
    assert job is not None
    counts: list[dict[str, int]] = []
    reconciler = threading.Thread(target=lambda: counts.append(reconcile(runtime)), daemon=True)
    reconciler.start()
    reconciler.join(timeout=10)
    try:
        assert not reconciler.is_alive(), "the reconciler waited on the row a worker holds"
    finally:
        job.status = "succeeded"
        job.finished_at = utcnow()
        holder.commit()
        holder.close()
        reconciler.join(timeout=30)
    assert status(client, user, training["id"])["status"] == "succeeded"


def test_the_database_reports_when_it_started(runtime: Any) -> None:
    from core.liveness import database_started_at

    with session_scope(runtime.sessions) as session:
        started = database_started_at(session)
    assert started is not None and utcnow() - timedelta(days=3650) < started < utcnow()


def test_no_job_is_silent_within_a_timeout_of_a_database_restart(
    client: httpx.Client, user: dict[str, str], runtime: Any, training: dict[str, Any], monkeypatch: Any
) -> None:
    """A restart stops every beat while the database is down: the live workers get a timeout to beat again before
    their jobs count as lost; once it has passed the silent job is taken back."""
    import core.liveness

    set_job(runtime, training["id"], status="running", worker_id="unknown", attempts=1,
            heartbeat_at=utcnow() - timedelta(hours=1))  # fmt: skip
    timeout = timedelta(seconds=runtime.settings.heartbeat_timeout_seconds)
    restarted = utcnow() - timeout / 2
    monkeypatch.setattr(core.liveness, "database_started_at", lambda _session: restarted)
    assert reconcile(runtime)["requeued"] == 0
    assert status(client, user, training["id"])["status"] == "running"
    restarted = utcnow() - timeout * 2
    assert reconcile(runtime)["requeued"] == 1
    assert status(client, user, training["id"])["status"] == "queued"



def test_a_job_that_beat_within_the_timeout_is_live_without_asking_the_database(
    runtime: Any, training: dict[str, Any], monkeypatch: Any
) -> None:
    """Claims check the job a message names: a live one must cost no query for the database's start time."""
    import core.liveness

    def no_query(_session: Any) -> None:
        raise AssertionError("asked the database when it started")

    set_job(runtime, training["id"], status="running", worker_id="alive", attempts=1, heartbeat_at=utcnow())
    monkeypatch.setattr(core.liveness, "database_started_at", no_query)
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, training["id"])
        assert job is not None and not core.liveness.is_silent(session, runtime.settings, job)
