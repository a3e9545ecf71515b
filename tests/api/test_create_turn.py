"""A create takes its turn in its queue round last (the round's counter stays locked until the commit, and every
create joining that round waits for it): after the counter's statement, only the idempotency record is written.
Its answer's queue position is the one a GET reads, and its turn is the counter's."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, select

from core.throughput import THROUGHPUT
from models import Job, QueueRound
from tests.conftest import auth, drop_waiting_jobs, make_user


def create(client: httpx.Client, user: dict[str, str], key: str | None = None) -> dict[str, Any]:
    headers = {**auth(user), **({"Idempotency-Key": key} if key else {})}
    response = client.post("/v1/generations", json={"prompt": "a dog", "steps": 2}, headers=headers)
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_a_create_writes_only_its_idempotency_record_after_taking_its_turn(
    client: httpx.Client, runtime: Any, monkeypatch: Any
) -> None:  # fmt: skip
    drop_waiting_jobs(runtime, "inference")
    monkeypatch.setattr(THROUGHPUT, "ttl", 3600.0)  # the queue's measured rate is not read again meanwhile
    users = [make_user(client) for _ in range(3)]
    for user in users:  # round 0: three turns
        create(client, user)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        job = create(client, users[0], key="turn-last")  # users[0]'s second job: round 1, turn 1
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
    turn = next(i for i, statement in enumerate(statements) if "INTO queue_rounds" in statement)
    assert statements[turn].startswith("WITH turn AS (INSERT INTO queue_rounds")
    after = statements[turn + 1 :]
    assert len(after) == 1 and after[0].startswith("INSERT INTO idempotency_records"), after

    assert job["queue_position"] == 3
    assert client.get(f"/v1/generations/{job['id']}", headers=auth(users[0])).json()["queue_position"] == 3
    with runtime.sessions() as session:
        row = session.get(Job, job["id"])
        counter = session.scalar(select(QueueRound).where(QueueRound.queue == "inference",
                                                          QueueRound.round == row.fair_round))  # fmt: skip
        assert (row.fair_round, row.round_seq) == (counter.round, counter.joined)
        assert row.enqueued_at is not None


def test_a_training_takes_its_turn_after_its_subjects_are_written(
    client: httpx.Client, runtime: Any
) -> None:  # fmt: skip
    from tests.api.helpers import subject_with_photos, train

    drop_waiting_jobs(runtime, "training")
    user = make_user(client)
    subjects = [subject_with_photos(client, user)["id"] for _ in range(2)]
    response = train(client, user, subjects, steps=5)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["subject_ids"] == subjects and body["queue_position"] == 0
    assert client.get(f"/v1/trainings/{body['id']}", headers=auth(user)).json() == body
