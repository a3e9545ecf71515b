"""Live job events (server-sent events), served by a real uvicorn server in this process: the notices come through
Redis pub/sub, as across processes in production."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from models import Generation
from tests.conftest import auth, drop_waiting_jobs, make_user, serving
from tests.worker.fake_method import FakeMethod
from worker.lifecycle import run_job
from worker.tasks.inference import generate_work


@pytest.fixture(scope="module")
def live(runtime: Any) -> Iterator[str]:
    """The API on a loopback port, with short heartbeats and at most two streams per user."""
    from api.app import create_app

    quick = runtime.settings.model_copy(update={"events_heartbeat_seconds": 0.3, "max_event_streams_per_user": 2,
                                                "events_min_interval_seconds": 0.05})  # fmt: skip
    with serving(create_app(dataclasses.replace(runtime, settings=quick))) as url:
        yield url


def events(lines: Iterator[str], until: float = 30.0) -> Iterator[tuple[str, str | None, dict[str, Any] | None]]:
    """(kind, id, job) per event or heartbeat; kind is "job", "ping" or "retry"."""
    deadline = time.monotonic() + until
    fields: dict[str, str] = {}
    for line in lines:
        assert time.monotonic() < deadline, "the stream did not end in time"
        if line.startswith(":"):
            yield "ping", None, None
        elif line == "":
            if "data" in fields:
                yield fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])
            elif "retry" in fields:
                yield "retry", None, None
            fields = {}
        else:
            name, _, value = line.partition(": ")
            fields[name] = value


def generate(client: httpx.Client, user: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/generations", json={"prompt": "a dog", "steps": 5}, headers=auth(user))
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_a_stream_follows_the_job_to_its_end(
    live: str, client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    drop_waiting_jobs(runtime, "inference")
    job = generate(client, user)
    fake_method.on_step = lambda step: time.sleep(0.15)  # steps slow enough to be seen one by one
    seen: list[dict[str, Any]] = []
    ids: list[str | None] = []
    with httpx.stream("GET", f"{live}/v1/generations/{job['id']}/events", headers=auth(user), timeout=30) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        worker = None
        for kind, event_id, data in events(stream.iter_lines()):
            if kind != "job":
                continue
            assert data is not None
            seen.append(data)
            ids.append(event_id)
            if worker is None:  # the first event is the state at connection: queued
                assert data["status"] == "queued" and data["queue_position"] == 0
                worker = threading.Thread(target=run_job, args=(runtime, Generation, job["id"], "w1",
                                                                generate_work(runtime)))  # fmt: skip
                worker.start()
        assert worker is not None
        worker.join(timeout=30)
    statuses = [event["status"] for event in seen]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses
    steps = [event["progress"]["step"] for event in seen if event["status"] == "running"]
    assert len(steps) >= 2 and steps == sorted(steps)  # progress comes as it happens, in order
    assert seen[-1] == client.get(f"/v1/generations/{job['id']}", headers=auth(user)).json() | {
        "images": seen[-1]["images"]}  # the job as GET returns it (signed links differ by signing time)
    assert len(set(ids)) == len(ids)

    # Resuming with the last id: the client has the final state already, so nothing is repeated.
    resumed = httpx.get(f"{live}/v1/generations/{job['id']}/events",
                        headers=auth(user) | {"Last-Event-ID": str(ids[-1])}, timeout=10)  # fmt: skip
    assert resumed.status_code == 200 and "event: job" not in resumed.text
    again = httpx.get(f"{live}/v1/generations/{job['id']}/events",
                      headers=auth(user) | {"Last-Event-ID": str(ids[0])}, timeout=10)  # fmt: skip
    assert again.text.count("event: job") == 1 and '"status":"succeeded"' in again.text


def test_heartbeats_keep_a_waiting_stream_open(live: str, client: httpx.Client, user: dict[str, str]) -> None:
    job = generate(client, user)
    pings = 0
    with httpx.stream("GET", f"{live}/v1/generations/{job['id']}/events", headers=auth(user), timeout=10) as stream:
        for kind, _, _ in events(stream.iter_lines()):
            pings += kind == "ping"
            if pings == 3:
                break
    assert pings == 3


def test_open_streams_per_user_are_capped(live: str, client: httpx.Client) -> None:
    user = make_user(client)
    jobs = [generate(client, user) for _ in range(3)]
    url = f"{live}/v1/generations/{{}}/events"
    with httpx.stream("GET", url.format(jobs[0]["id"]), headers=auth(user), timeout=10) as first, \
            httpx.stream("GET", url.format(jobs[1]["id"]), headers=auth(user), timeout=10) as second:  # fmt: skip
        assert first.status_code == second.status_code == 200
        over = httpx.get(url.format(jobs[2]["id"]), headers=auth(user), timeout=10)
        assert over.status_code == 429 and over.headers["content-type"] == "application/problem+json"
        assert over.json()["limit"] == 2 and "Retry-After" in over.headers
    deadline = time.monotonic() + 10  # closed streams give their slots back
    while True:
        with httpx.stream("GET", url.format(jobs[2]["id"]), headers=auth(user), timeout=10) as third:
            if third.status_code == 200:
                break
        assert time.monotonic() < deadline, "slots were not given back"
        time.sleep(0.2)


@pytest.mark.parametrize("kind", ["trainings", "generations", "edits"])
def test_another_users_or_unknown_job_is_404_and_no_key_401(
    client: httpx.Client, user: dict[str, str], other_user: dict[str, str], kind: str
) -> None:
    job = generate(client, user)
    own_kind = kind == "generations"
    theirs = client.get(f"/v1/{kind}/{job['id']}/events", headers=auth(other_user))
    assert theirs.status_code == 404 and theirs.headers["content-type"] == "application/problem+json"
    if not own_kind:  # the id is a generation's: not a training or an edit of this user either
        assert client.get(f"/v1/{kind}/{job['id']}/events", headers=auth(user)).status_code == 404
    assert client.get(f"/v1/{kind}/nope/events", headers=auth(user)).status_code == 404
    assert client.get(f"/v1/{kind}/{job['id']}/events").status_code == 401
