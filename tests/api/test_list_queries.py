"""A page of jobs reads its images, subjects and checkpoints in one query each, not one per job (no N+1), and
shows each job as its own GET does."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import event

from core.db import session_scope
from core.jobs import change_status, succeed
from models import RUNNING, Job, JobImage
from tests.api.helpers import finished_checkpoint, subject_with_photos, train
from tests.conftest import auth


@contextmanager
def counted(runtime: Any) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)


def without_signature(job: dict[str, Any]) -> dict[str, Any]:
    """The job with its image links cut to their path (a link's signature carries the second it was made)."""
    images = [{**image, "url": urlsplit(image["url"]).path} for image in job.get("images", [])]
    return {**job, "images": images}


def succeed_with_images(runtime: Any, job_id: str, count: int) -> None:
    """As a worker finishes a generation: its images written with its success."""
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        change_status(session, runtime, job, RUNNING)
        for index in range(count):
            session.add(JobImage(job_id=job_id, index=index, storage_key=f"users/x/generations/{job_id}/{index}.png",
                                 seed=index, width=64, height=64, size_bytes=10))  # fmt: skip
        succeed(session, runtime, job)


def test_a_page_of_generations_costs_the_same_queries_whatever_its_length(
    client: httpx.Client, runtime: Any, user: dict[str, str]
) -> None:  # fmt: skip
    ids = []
    for n in range(6):
        response = client.post("/v1/generations", json={"prompt": f"a dog {n}", "num_images": 2}, headers=auth(user))
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
        if n % 3:
            succeed_with_images(runtime, ids[-1], n % 3)
    queries = {}
    for limit in (3, 6):  # each page has queued and succeeded jobs
        with counted(runtime) as statements:
            page = client.get(f"/v1/generations?limit={limit}", headers=auth(user)).json()
        assert len(page["data"]) == limit
        queries[limit] = len(statements)
    assert queries[3] == queries[6]
    for job in page["data"]:
        alone = client.get(f"/v1/generations/{job['id']}", headers=auth(user)).json()
        assert without_signature(job) == without_signature(alone)
    assert sorted(len(job["images"]) for job in page["data"]) == [0, 0, 1, 1, 2, 2]


def test_a_job_without_success_has_no_images_to_read(client: httpx.Client, runtime: Any, user: dict[str, str]) -> None:
    """Images are written with a job's success: a queued job's GET (what clients poll) does not look for any."""
    job = client.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user)).json()
    with counted(runtime) as statements:
        response = client.get(f"/v1/generations/{job['id']}", headers=auth(user))
    assert response.status_code == 200 and response.json()["images"] == []
    assert not [statement for statement in statements if "job_images" in statement]


def test_a_page_of_trainings_shows_their_subjects_and_checkpoints(
    client: httpx.Client, runtime: Any, user: dict[str, str]
) -> None:  # fmt: skip
    first, second = subject_with_photos(client, user), subject_with_photos(client, user)
    one = train(client, user, [first["id"]], steps=10).json()["id"]
    both = train(client, user, [second["id"], first["id"]], steps=10).json()["id"]
    checkpoint = finished_checkpoint(runtime, one)
    page = client.get("/v1/trainings?limit=100", headers=auth(user)).json()["data"]
    shown = {job["id"]: (job["subject_ids"], job["checkpoint_id"]) for job in page}
    assert shown == {one: ([first["id"]], checkpoint), both: ([second["id"], first["id"]], None)}
    for job in page:
        assert job == client.get(f"/v1/trainings/{job['id']}", headers=auth(user)).json()
