"""Scale-out with the engines already in use: two API processes (uvicorn, real subprocesses) and two worker
processes (the real task shells with the test double of the ML) on one PostgreSQL and one Redis. Jobs created
through both APIs each run exactly once, both workers take part, and either API's /metrics shows the queue depth."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from models import TERMINAL, Checkpoint, Job, JobImage
from tests.api.helpers import subject_with_photos, train
from tests.conftest import ROOT, auth, drop_waiting_jobs, free_port, make_user, start_worker, stop_worker

APP = "tests.worker.fake_worker_app"
WORKERS = ("scale-a", "scale-b")
STEPS = 6  # each step sleeps FAKE_STEP_SECONDS: a job lasts long enough for the other worker to take the next one
# the pools docker-compose.yml gives each process (README "Scale-out")
WORKER_ENV = {"FAKE_STEP_SECONDS": "0.15", "SVDIFF_DB_POOL_SIZE": "1", "SVDIFF_DB_MAX_OVERFLOW": "2"}
API_ENV = {"SVDIFF_DB_POOL_SIZE": "5", "SVDIFF_DB_MAX_OVERFLOW": "15"}
TRAININGS, GENERATIONS, IMAGES = 4, 6, 2


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def api_process(service_env: dict[str, str], name: str) -> Iterator[str]:
    """`uvicorn api.app:create_app --factory` in its own process, as a replica runs; yields its base URL."""
    port = free_port()
    env = {**os.environ, **service_env, **API_ENV, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port",
           str(port), "--log-level", "warning"]  # fmt: skip
    log = open(Path(service_env["SVDIFF_DATA_DIR"]) / f"{name}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def worker_ready(service_env: dict[str, str], name: str) -> bool:
    log = Path(service_env["SVDIFF_DATA_DIR"]) / f"{name}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return any(f"{name}@" in line and line.rstrip().endswith(" ready.") for line in lines)


def samples(api: httpx.Client) -> dict[tuple[str, str], float]:
    """/metrics as {(name, queue): value} for the per-queue series."""
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, sample.labels["queue"]): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if set(sample.labels) == {"queue"}
    }


def jobs(runtime: Any, ids: list[str]) -> list[Job]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(ids))).all())


def all_finished(runtime: Any, ids: list[str]) -> bool:
    return all(job.status in TERMINAL for job in jobs(runtime, ids))


def stored_keys(runtime: Any, prefix: str) -> list[str]:
    listing = runtime.storage.client.list_objects_v2(Bucket=runtime.settings.s3_bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def assert_ran_once(runtime: Any, ids: list[str]) -> set[str]:
    """Every job succeeded on its first attempt, its outputs stored once; returns the workers that ran them."""
    finished = jobs(runtime, ids)
    assert len(finished) == len(ids)
    for job in finished:
        assert job.status == "succeeded", (job.id, job.status, job.error_type, job.error_detail)
        assert job.attempts == 1, (job.id, job.attempts)
    with runtime.sessions() as session:
        for job in finished:
            if job.kind == "training":
                checkpoints = session.scalars(select(Checkpoint).where(Checkpoint.training_id == job.id)).all()
                assert len(checkpoints) == 1
                folder = checkpoints[0].storage_key.rsplit("/", 1)[0] + "/"
                assert stored_keys(runtime, folder) == [checkpoints[0].storage_key]
            else:
                images = session.scalars(select(JobImage).where(JobImage.job_id == job.id)).all()
                assert sorted(image.index for image in images) == list(range(IMAGES))
                folder = f"users/{job.user_id}/generations/{job.id}/"
                assert sorted(stored_keys(runtime, folder)) == sorted(image.storage_key for image in images)
    return {str(job.worker_id).split("@", 1)[0] for job in finished}


def create_trainings(apis: list[httpx.Client], users: list[dict[str, str]]) -> list[str]:
    ids = []
    for n in range(TRAININGS):
        api, user = apis[n % 2], users[n % 2]  # alternating: each API creates half of each kind
        subject = subject_with_photos(api, user)
        response = train(api, user, [subject["id"]], steps=STEPS)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def create_generations(apis: list[httpx.Client], users: list[dict[str, str]], checkpoints: dict[str, str]) -> (
        list[str]):  # fmt: skip
    ids = []
    for n in range(GENERATIONS):
        api, user = apis[n % 2], users[n % 2]
        body = {"prompt": "a dog on a beach", "num_images": IMAGES, "steps": STEPS,
                "checkpoints": [{"id": checkpoints[user["id"]]}]}  # fmt: skip
        response = api.post("/v1/generations", json=body, headers=auth(user))
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def checkpoint_of_each_user(runtime: Any, training_ids: list[str]) -> dict[str, str]:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Job.user_id, Checkpoint.id).join(Checkpoint, Checkpoint.training_id == Job.id)
            .where(Job.id.in_(training_ids))
        ).all()  # fmt: skip
    return {user_id: checkpoint_id for user_id, checkpoint_id in rows}


def test_two_apis_and_two_workers_run_each_job_once(runtime: Any, service_env: dict[str, str]) -> None:
    drop_waiting_jobs(runtime, "training", "inference")  # what earlier tests left waiting: not this test's jobs
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(api_process(service_env, f"api-{n}")) for n in range(2)]
        for url in urls:
            wait_until(lambda url=url: healthy(url), 60, f"the API at {url}")
        apis = [stack.enter_context(httpx.Client(base_url=url, timeout=30)) for url in urls]
        users = [make_user(apis[0]), make_user(apis[1])]

        training_ids = create_trainings(apis, users)
        for api in apis:  # both replicas see the same depth: the broker's messages and the database's queued jobs
            depth = samples(api)
            assert depth[("svdiff_jobs_queued", "training")] == TRAININGS
            assert depth[("svdiff_broker_queue_messages", "training")] == TRAININGS
            assert ("svdiff_jobs_running", "training") in depth  # earlier tests may leave jobs running

        for name in WORKERS:
            process = start_worker(service_env, "training,inference", WORKER_ENV, app=APP, name=name)
            stack.callback(stop_worker, process)
        wait_until(lambda: all_finished(runtime, training_ids), 45, "the trainings")
        for name in WORKERS:
            wait_until(lambda name=name: worker_ready(service_env, name), 30, f"worker {name}")

        checkpoints = checkpoint_of_each_user(runtime, training_ids)
        generation_ids = create_generations(apis, users, checkpoints)
        wait_until(lambda: all_finished(runtime, generation_ids), 45, "the generations")

        assert assert_ran_once(runtime, training_ids + generation_ids) == set(WORKERS)
        for api in apis:  # after the cache's few seconds, the drained queues and the workers seen
            def drained(api: httpx.Client = api) -> bool:
                now = samples(api)
                return now[("svdiff_jobs_queued", "inference")] == 0 and now[("svdiff_workers_seen", "inference")] >= 2

            wait_until(drained, 15, "the metrics of the drained queues")
        assert apis[1].get(f"/v1/generations/{generation_ids[0]}", headers=auth(users[0])).json()["status"] == (
            "succeeded")  # a job created through one API reads the same through the other
