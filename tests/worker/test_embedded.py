"""The embedded default: SQLite, a local blob folder, the in-process broker and real Celery workers in threads
(the same task code, never eager mode), run end to end with the test double of the method."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import migrate
from core.runtime import build_runtime
from core.settings import Settings
from tests.images import dog
from tests.worker.fake_method import FakeMethod
from worker.embedded import start_embedded_worker, stop_embedded_worker


@pytest.fixture
def embedded(tmp_path: Path, fake_method: FakeMethod) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(data_dir=tmp_path, progress_interval_seconds=0, _env_file=None)  # type: ignore[call-arg]
    assert settings.embedded_broker and settings.storage == "local" and settings.db_url.startswith("sqlite")
    migrate.upgrade(settings.db_url)
    runtime = build_runtime(settings)
    worker = start_embedded_worker(runtime)
    try:
        with TestClient(create_app(runtime)) as client:
            key = (tmp_path / "admin.key").read_text().strip()  # the development admin, printed at start
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        stop_embedded_worker(worker)
        runtime.close()


def wait(fetch: Callable[[], dict[str, Any]], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = fetch()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job still {job['status']}")


def test_upload_train_generate_without_any_configuration(embedded: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = embedded
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(3)]
    data = {"name": "Rex", "class_word": "dog", "train": "true"}
    created = client.post("/v1/subjects", data=data, files=files, headers=headers)
    assert created.status_code == 201, created.text
    training_id = created.json()["training"]["id"]
    training = wait(lambda: client.get(f"/v1/trainings/{training_id}", headers=headers).json())
    assert training["status"] == "succeeded", training
    body = {"prompt": "a sks dog in the snow", "checkpoints": [{"id": training["checkpoint_id"]}], "num_images": 2}
    generation_id = client.post("/v1/generations", json=body, headers=headers).json()["id"]
    generation = wait(lambda: client.get(f"/v1/generations/{generation_id}", headers=headers).json())
    assert generation["status"] == "succeeded" and len(generation["images"]) == 2
    image = client.get(urlsplit(generation["images"][0]["url"]).path)  # a signed local download link
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert client.get("/v1/files/forged.token").status_code == 404
    checkpoint = client.get(f"/v1/checkpoints/{training['checkpoint_id']}", headers=headers).json()
    assert client.get(urlsplit(checkpoint["download_url"]).path).content == b"shifts[sks:3]"


def test_the_reconciler_runs_in_process_and_nothing_is_forked(
    tmp_path: Path, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    import multiprocessing

    import worker.tasks.cpu

    calls: list[float] = []
    monkeypatch.setattr(worker.tasks.cpu, "reconcile_once", lambda runtime: calls.append(time.monotonic()) or {})
    settings = Settings(data_dir=tmp_path, reconcile_every_seconds=0.2, _env_file=None)  # type: ignore[call-arg]
    migrate.upgrade(settings.db_url)
    runtime = build_runtime(settings)
    embedded = start_embedded_worker(runtime)
    try:
        deadline = time.monotonic() + 30
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(calls) >= 2, "the reconciler never ran: its clock's tasks did not reach this process's worker"
        assert multiprocessing.active_children() == []
    finally:
        stop_embedded_worker(embedded)
        runtime.close()
    assert list(tmp_path.glob("celerybeat-schedule*"))  # in the data folder, not the working directory


def test_live_events_come_from_the_in_process_hub(
    embedded: tuple[TestClient, dict[str, str]], fake_method: FakeMethod
) -> None:
    import json

    client, headers = embedded
    fake_method.on_step = lambda step: time.sleep(0.1)
    job = client.post("/v1/generations", json={"prompt": "a dog", "steps": 8}, headers=headers).json()
    started = time.monotonic()
    body = client.get(f"/v1/generations/{job['id']}/events", headers=headers).text  # ends with the job
    assert time.monotonic() - started < 30  # woken by each change, not by the once-a-minute re-read
    seen = [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: ")]
    assert seen[-1]["status"] == "succeeded" and len(seen[-1]["images"]) == 1
    assert len([event for event in seen if event["status"] == "running"]) >= 2
