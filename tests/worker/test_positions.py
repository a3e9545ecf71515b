"""Queue positions read from the per-round counters (`core.positions`) agree with counting the queue in the fair
order, through creates by several users, claims, cancellations ahead, a lost worker's job taken back, deletions
with a subject and a bulk change the reconciler repairs; and reading one costs no scan of the queue."""

from __future__ import annotations

import random
from typing import Any

import httpx
from sqlalchemy import event, func, select, tuple_

from core.db import session_scope
from core.jobs import change_status
from core.positions import repair
from core.views import Presenter
from models import QUEUED, Job
from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth, drop_waiting_jobs, make_user
from worker.lifecycle import claim_next


def exact_position(session: Any, job: Job) -> int:
    order = (Job.fair_round, Job.created_at, Job.id)
    ahead = tuple_(*order) < tuple_(job.fair_round, job.created_at, job.id)
    return int(session.scalar(select(func.count(Job.id)).where(Job.queue == job.queue, Job.status == QUEUED, ahead)))


def both_ways(runtime: Any) -> list[tuple[int, int]]:
    with runtime.sessions() as session:
        presenter = Presenter(session, runtime.storage, runtime.settings)
        queued = session.scalars(select(Job).where(Job.queue == "inference", Job.status == QUEUED)).all()
        return [(presenter.queue_position(job), exact_position(session, job)) for job in queued]  # type: ignore[misc]


def generate(client: httpx.Client, user: dict[str, str]) -> str:
    response = client.post("/v1/generations", json={"prompt": "a dog", "steps": 2}, headers=auth(user))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_counted_positions_match_the_queue_through_creates_claims_and_cancels(
    client: httpx.Client, runtime: Any
) -> None:
    drop_waiting_jobs(runtime, "inference")
    users = [make_user(client) for _ in range(3)]
    rng = random.Random(7)
    owner: dict[str, dict[str, str]] = {}
    canceled = 0
    for action in "ccccccxkcccxkkxcccxkxcckk":  # c: create, k: claim the head, x: cancel anywhere in the line
        waiting = list(owner)
        if action == "c" or not waiting:
            user = rng.choice(users)
            owner[generate(client, user)] = user
        elif action == "k":
            assert claim_next(runtime, "inference", waiting[0], "w") is not None
        else:  # one behind others in its round may leave their positions low by one
            job_id = rng.choice(waiting)
            assert client.post(f"/v1/generations/{job_id}/cancel", headers=auth(owner[job_id])).status_code == 202
            canceled += 1
        owner = {job: user for job, user in owner.items() if _queued(runtime, job)}
        pairs = both_ways(runtime)
        assert all(exact - canceled <= counted <= exact for counted, exact in pairs), (canceled, pairs)
    assert canceled == 5


def _queued(runtime: Any, job_id: str) -> bool:
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        return job is not None and job.status == QUEUED


def test_claims_in_order_keep_positions_exact(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    heavy, light = make_user(client), make_user(client)
    for _ in range(4):
        generate(client, heavy)
    for _ in range(3):
        generate(client, light)
    for _ in range(4):
        pairs = both_ways(runtime)
        assert [counted for counted, _ in pairs] == [exact for _, exact in pairs]
        assert claim_next(runtime, "inference", "any", "w") is not None


def test_a_job_taken_back_from_a_lost_worker_is_first_again(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    user = make_user(client)
    first = generate(client, user)
    later = [generate(client, make_user(client)) for _ in range(2)]
    assert claim_next(runtime, "inference", first, "w") is not None
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, first)
        assert job is not None
        change_status(session, runtime, job, QUEUED)
    with runtime.sessions() as session:
        presenter = Presenter(session, runtime.storage, runtime.settings)
        positions = [presenter.queue_position(session.get(Job, job_id)) for job_id in [first, *later]]  # type: ignore[arg-type]
    assert positions == [0, 1, 2]


def test_a_deleted_subject_takes_its_queued_trainings_out_of_line(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "training")
    user = make_user(client)
    doomed = subject_with_photos(client, user)
    train(client, user, [doomed["id"]])
    owner = make_user(client)
    kept = subject_with_photos(client, owner)
    waiting = train(client, owner, [kept["id"]]).json()
    assert waiting["queue_position"] == 1
    assert client.delete(f"/v1/subjects/{doomed['id']}", headers=auth(user)).status_code == 204
    assert client.get(f"/v1/trainings/{waiting['id']}", headers=auth(owner)).json()["queue_position"] == 0


def test_the_reconciler_repairs_counters_a_bulk_change_bypassed(client: httpx.Client, runtime: Any) -> None:
    drop_waiting_jobs(runtime, "inference")
    users = [make_user(client) for _ in range(2)]
    jobs = [generate(client, users[i % 2]) for i in range(6)]
    with session_scope(runtime.sessions) as session:  # two jobs vanish from the queue behind the counters' back
        for job_id in jobs[:2]:
            job = session.get(Job, job_id)
            assert job is not None
            job.status = "failed"
    assert any(counted != exact for counted, exact in both_ways(runtime))
    with session_scope(runtime.sessions) as session:
        assert repair(session) >= 1
    assert all(counted == exact for counted, exact in both_ways(runtime))


def test_reading_a_position_does_not_touch_the_jobs_table(client: httpx.Client, runtime: Any) -> None:
    user = make_user(client)
    job_id = generate(client, user)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with runtime.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        presenter = Presenter(session, runtime.storage, runtime.settings)
        event.listen(runtime.engine, "before_cursor_execute", record)
        try:
            presenter.queue_position(job)
        finally:
            event.remove(runtime.engine, "before_cursor_execute", record)
    assert len(statements) == 1 and "queue_rounds" in statements[0] and "jobs" not in statements[0], statements
