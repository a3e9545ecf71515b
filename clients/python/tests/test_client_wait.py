from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from mockapi import PING, MockApi, job_json, json_response, problem, sse_event, stream
from svdiff_client import Generation, JobFailed, NotFound, Training, Unauthorized, WaitOptions, WaitTimeout

EVENTS = "/v1/trainings/job-1/events"
GET = "/v1/trainings/job-1"


def progress(step: int, status: str = "running") -> dict[str, object]:
    return job_json(status=status, progress={"step": step, "total": 10})


def test_follows_the_stream_to_the_terminal_state(api: MockApi) -> None:
    chunks = [
        PING,
        sse_event(job_json(), "e1"),
        PING,
        sse_event(progress(5), "e2"),
        sse_event(progress(10, "succeeded"), "e3"),
    ]
    api.on("GET", EVENTS, stream(chunks))
    with api.client() as client:
        training = client.trainings.wait("job-1")
    assert isinstance(training, Training) and training.status == "succeeded" and training.checkpoint_id == "c-1"
    assert api.paths() == [EVENTS]
    request = api.requests[0]
    assert request.headers["accept"] == "text/event-stream" and "last-event-id" not in request.headers
    assert request.headers["authorization"] == "Bearer svd_test_key"


def test_events_split_anywhere_across_chunks(api: MockApi) -> None:
    raw = PING + sse_event(progress(3), "e1") + sse_event(progress(10, "succeeded"), "e2")
    api.on("GET", EVENTS, stream([raw[i : i + 7] for i in range(0, len(raw), 7)]))
    with api.client() as client:
        assert client.trainings.wait("job-1").status == "succeeded"


def test_a_broken_stream_resumes_with_last_event_id(api: MockApi) -> None:
    api.on("GET", EVENTS,
           stream([sse_event(job_json(), "e1"), sse_event(progress(4), "e2")], httpx.ReadError("reset")),
           stream([PING, sse_event(progress(10, "succeeded"), "e3")]))  # fmt: skip
    sleeps: list[float] = []
    with api.client(sleeps) as client:
        assert client.trainings.wait("job-1").status == "succeeded"
    assert api.paths() == [EVENTS, EVENTS]
    assert api.requests[1].headers["last-event-id"] == "e2"
    assert len(sleeps) == 1


def test_a_stream_closed_early_is_resumed_then_polled(api: MockApi) -> None:
    """A stream that keeps ending before the terminal state: resumed max_reconnects times, then polling."""
    api.on("GET", EVENTS, stream([sse_event(progress(1), "e1")]), stream([PING]))
    api.on("GET", GET, json_response(progress(10, "succeeded")))
    with api.client(wait_options=WaitOptions(max_reconnects=2)) as client:
        assert client.trainings.wait("job-1").status == "succeeded"
    assert api.paths() == [EVENTS, EVENTS, EVENTS, GET]
    assert [r.headers.get("last-event-id") for r in api.requests[:3]] == [None, "e1", "e1"]


@pytest.mark.parametrize("status", [404, 405, 501, 429, 503])
def test_no_stream_falls_back_to_polling_with_backoff(api: MockApi, status: int) -> None:
    api.on("GET", EVENTS, problem(status))
    api.on("GET", GET, json_response(job_json()), json_response(progress(2)), json_response(progress(7)),
           json_response(progress(10, "succeeded")))  # fmt: skip
    sleeps: list[float] = []
    options = WaitOptions(poll_interval=1.0, poll_backoff=2.0, max_poll_interval=3.0)
    with api.client(sleeps, wait_options=options, max_retries=0) as client:
        assert client.trainings.wait("job-1").status == "succeeded"
    assert api.paths() == [EVENTS, GET, GET, GET, GET]
    assert [round(s) for s in sleeps] == [1, 2, 3]  # grows, capped (within the ±10% jitter)


def test_a_stream_that_is_not_an_event_stream_falls_back(api: MockApi) -> None:
    api.on("GET", EVENTS, json_response(job_json()))
    api.on("GET", GET, json_response(progress(10, "succeeded")))
    with api.client() as client:
        assert client.trainings.wait("job-1").status == "succeeded"
    assert api.paths() == [EVENTS, GET]


def test_a_bad_key_on_the_stream_raises(api: MockApi) -> None:
    api.on("GET", EVENTS, problem(401, "Missing or invalid API key."))
    with api.client() as client, pytest.raises(Unauthorized):
        client.trainings.wait("job-1")
    assert api.paths() == [EVENTS]


def test_a_job_that_does_not_exist_raises_not_found_from_the_poll(api: MockApi) -> None:
    api.on("GET", EVENTS, problem(404, "No training 'job-1'."))
    api.on("GET", GET, problem(404, "No training 'job-1'."))
    with api.client() as client, pytest.raises(NotFound, match="No training"):
        client.trainings.wait("job-1")


def test_a_failed_job_raises_with_its_error(api: MockApi) -> None:
    failed = job_json(status="failed", error={"type": "out_of_memory", "detail": "CUDA out of memory"})
    api.on("GET", EVENTS, stream([sse_event(job_json(), "1"), sse_event(failed, "2")]))
    with api.client() as client:
        with pytest.raises(JobFailed) as caught:
            client.trainings.wait("job-1")
        assert caught.value.error is not None and caught.value.error.type == "out_of_memory"
        assert caught.value.job.status == "failed" and "CUDA out of memory" in str(caught.value)
        assert client.trainings.wait("job-1", raise_on_failure=False).status == "failed"


def test_a_canceled_job_is_returned(api: MockApi) -> None:
    api.on("GET", EVENTS, stream([sse_event(job_json(status="canceled"), "1")]))
    with api.client() as client:
        assert client.trainings.wait("job-1").status == "canceled"


def test_a_finished_job_is_returned_without_asking(api: MockApi) -> None:
    with api.client() as client:
        done = Training.model_validate(progress(10, "succeeded"))
        assert client.wait(done) is done
        failed = Training.model_validate(job_json(status="failed", error={"type": "x", "detail": "y"}))
        with pytest.raises(JobFailed):
            client.wait(failed)
    assert api.requests == []


def test_client_wait_dispatches_on_the_kind(api: MockApi) -> None:
    api.on("GET", "/v1/generations/g-1/events", problem(404))
    api.on("GET", "/v1/generations/g-1", json_response(job_json("generation", "succeeded", "g-1", images=[
        {"url": "https://cdn.example.test/x.png", "seed": 3, "width": 64, "height": 64}])))  # fmt: skip
    generation = Generation.model_validate(job_json("generation", "queued", "g-1"))
    with api.client() as client:
        finished = client.wait(generation)
    assert isinstance(finished, Generation) and finished.images[0].seed == 3


def test_timeout_while_the_stream_only_pings(api: MockApi) -> None:
    api.on("GET", EVENTS, stream([sse_event(progress(1), "e1")] + [PING] * 1000, pause=0.01))
    started = time.monotonic()
    with api.client() as client, pytest.raises(WaitTimeout) as caught:
        client.trainings.wait("job-1", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert caught.value.job is not None and caught.value.job.progress.step == 1


def test_timeout_while_polling(api: MockApi) -> None:
    api.on("GET", EVENTS, problem(404))
    api.on("GET", GET, json_response(progress(1)))
    client = api.client(wait_options=WaitOptions(poll_interval=0.05))
    client._sleep = time.sleep
    started = time.monotonic()
    with client, pytest.raises(WaitTimeout, match="last seen running"):
        client.trainings.wait("job-1", timeout=0.4)
    assert 0.4 <= time.monotonic() - started < 2.0
    assert len(api.paths("GET")) > 3


def test_events_of_other_types_and_bad_data_are_skipped(api: MockApi) -> None:
    done = json.dumps(progress(10, "succeeded"))
    raw = b"event: note\ndata: {}\n\nevent: job\ndata: not json\n\nid: 3\nevent: job\ndata: " + done.encode() + b"\n\n"
    api.on("GET", EVENTS, stream([raw]))
    with api.client() as client:
        assert client.trainings.wait("job-1").status == "succeeded"


def test_async_stream_resume_and_fallback(api: MockApi) -> None:
    api.on("GET", EVENTS, stream([PING, sse_event(progress(2), "a1")], httpx.ReadError("reset")), problem(501))
    api.on("GET", GET, json_response(progress(5)), json_response(progress(10, "succeeded")))
    sleeps: list[float] = []

    async def run() -> Training:
        async with api.async_client(sleeps) as client:
            return await client.trainings.wait("job-1")

    assert asyncio.run(run()).status == "succeeded"
    assert api.paths() == [EVENTS, EVENTS, GET, GET]
    assert api.requests[1].headers["last-event-id"] == "a1"
    assert len(sleeps) == 2  # one before resuming, one between the polls


def test_async_failed_and_timeout(api: MockApi) -> None:
    failed = job_json(status="failed", error={"type": "nan", "detail": "loss diverged"})
    api.on(
        "GET",
        "/v1/edits/e-1/events",
        stream(
            [
                sse_event(job_json("edit", job_id="e-1"), "1"),
                sse_event({**failed, "kind": "edit", "id": "e-1", "images": []}),
            ]
        ),
    )
    api.on("GET", EVENTS, stream([PING] * 1000, pause=0.01))

    async def run() -> None:
        async with api.async_client() as client:
            with pytest.raises(JobFailed, match="loss diverged"):
                await client.edits.wait("e-1")
            with pytest.raises(WaitTimeout):
                await client.trainings.wait("job-1", timeout=0.2)

    asyncio.run(run())


def test_on_update_sees_each_change_once_from_the_stream(api: MockApi) -> None:
    chunks = [sse_event(job_json(), "e1"), PING, sse_event(progress(5), "e2"), sse_event(progress(5), "e2b"),
              sse_event(progress(10, "succeeded"), "e3")]  # fmt: skip
    api.on("GET", EVENTS, stream(chunks))
    seen: list[tuple[str, int]] = []
    with api.client() as client:
        client.trainings.wait("job-1", on_update=lambda job: seen.append((job.status, job.progress.step)))
    assert seen == [("queued", 0), ("running", 5), ("succeeded", 10)]


def test_on_update_sees_polled_changes_too(api: MockApi) -> None:
    api.on("GET", EVENTS, problem(404))
    api.on("GET", GET, json_response(progress(2)), json_response(progress(2)), json_response(progress(10, "succeeded")))
    seen: list[int] = []
    with api.client([]) as client:
        client.trainings.wait("job-1", on_update=lambda job: seen.append(job.progress.step))
    assert seen == [2, 10]
