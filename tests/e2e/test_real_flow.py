"""The whole life of a subject through a real worker process running the real method: photos, training,
generation, both download formats, the admin view, signed webhooks, and deletion leaving nothing behind."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors import safe_open
from safetensors.torch import load as load_tensors
from sqlalchemy import func, select

from core import keys
from core.webhooks import verify
from models import Checkpoint, Job, Photo, Subject, training_subjects
from svdiff.checkpoint import deserialize
from tests.conftest import ADMIN_KEY, auth, start_worker, stop_worker
from tests.e2e.conftest import dog_photos, purge, real_worker_env, wait_job, worker_alive


@pytest.fixture(scope="module")
def real_worker(
    service_env: dict[str, str], runtime: Any, tiny_base: Path, e2e_data: Path
) -> Iterator[Any]:
    """One real worker process on the training and inference queues (solo pool: one task at a time)."""
    purge(runtime, "training", "inference")
    proc = start_worker(service_env, "training,inference", real_worker_env(tiny_base, e2e_data / "svd-tiny"),
                        name="real-e2e")
    yield worker_alive(proc, e2e_data / "real-e2e.log")
    stop_worker(proc)


def storage_keys(runtime: Any, prefix: str) -> set[str]:
    paginator = runtime.storage.client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=runtime.settings.s3_bucket, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def download_lora(client: httpx.Client, user: dict[str, str], path: str, timeout: float = 90.0) -> httpx.Response:
    """format=lora answers 202 with Retry-After while an inference worker makes the export."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path, headers=auth(user))
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        assert response.json()["status"] == "exporting" and response.headers["Retry-After"]
        time.sleep(0.5)


def safetensors_metadata(data: bytes, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "file.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), "pt") as handle:
        return dict(handle.metadata() or {})


def test_subject_lifecycle_with_the_real_method(
    client: httpx.Client, user: dict[str, str], runtime: Any, real_worker: Any, tmp_path: Path
) -> None:
    photos = dog_photos()
    subject = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user)).json()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    uploaded = client.post(f"/v1/subjects/{subject['id']}/photos", files=files, headers=auth(user))
    assert uploaded.status_code == 201, uploaded.text
    body = {"subject_ids": [subject["id"]], "steps": 4}
    created = client.post("/v1/trainings", json=body, headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())})
    assert created.status_code == 202, created.text
    training = wait_job(client, user, f"/v1/trainings/{created.json()['id']}", alive=real_worker)
    assert training["status"] == "succeeded", training["error"]
    assert training["progress"] == {"step": 4, "total": 4}

    prompt = f"a photo of a {subject['token']} dog on the beach"
    generation = client.post("/v1/generations", headers=auth(user), json={
        "prompt": prompt, "checkpoints": [{"id": training["checkpoint_id"]}], "num_images": 2, "seed": 7, "steps": 2,
    }).json()  # fmt: skip
    generation = wait_job(client, user, f"/v1/generations/{generation['id']}", alive=real_worker)
    assert generation["status"] == "succeeded", generation["error"]
    assert [image["seed"] for image in generation["images"]] == [7, 8]
    pngs = [httpx.get(image["url"], timeout=30).content for image in generation["images"]]  # presigned S3 links
    assert all(png.startswith(b"\x89PNG") for png in pngs) and pngs[0] != pngs[1]

    checkpoint = client.get(f"/v1/checkpoints/{training['checkpoint_id']}", headers=auth(user)).json()
    shifts = client.get(f"/v1/checkpoints/{checkpoint['id']}/file?format=svdiff", headers=auth(user))
    assert shifts.status_code == 200
    assert hashlib.sha256(shifts.content).hexdigest() == checkpoint["sha256"]
    assert len(shifts.content) == checkpoint["size_bytes"]
    assert load_tensors(shifts.content)  # plain safetensors
    parsed = deserialize(shifts.content)
    assert parsed.metadata.subjects == [{"token": subject["token"], "class_word": "dog"}]
    assert parsed.metadata.training["step"] == 4
    lora = download_lora(client, user, f"/v1/checkpoints/{checkpoint['id']}/file?format=lora&rank=4")
    assert lora.status_code == 200, lora.text
    tensors = load_tensors(lora.content)
    assert tensors and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in tensors)
    assert max(t.shape[0] for k, t in tensors.items() if k.endswith("lora_A.weight")) <= 4
    assert safetensors_metadata(lora.content, tmp_path)["rank"] == "4"
    stored = runtime.storage.get(keys.checkpoint_lora(user["id"], checkpoint["id"], 4))
    assert hashlib.sha256(lora.content).hexdigest() == hashlib.sha256(stored).hexdigest()

    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    (row,) = client.get(f"/v1/admin/subjects?user_id={user['id']}", headers=admin).json()["data"]
    assert row["owner"]["id"] == user["id"] and row["owner"]["name"]
    assert row["photo_count"] == len(photos) and row["checkpoint_count"] == 1
    assert row["checkpoint_bytes"] == checkpoint["size_bytes"] and row["last_trained_at"]

    before = storage_keys(runtime, keys.user_prefix(user["id"]))
    images = {keys.generation_image(user["id"], generation["id"], i) for i in range(2)}
    assert images < before and any("/checkpoints/" in k for k in before) and any("/photos/" in k for k in before)
    priors = storage_keys(runtime, "priors/")
    assert priors  # the class images of "dog" for this base model
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204

    with runtime.sessions() as session:
        assert session.get(Subject, subject["id"]) is None
        assert session.get(Job, training["id"]) is None
        assert session.get(Checkpoint, checkpoint["id"]) is None
        assert session.scalar(select(func.count()).select_from(Photo).where(Photo.subject_id == subject["id"])) == 0
        linked = select(func.count()).select_from(training_subjects)
        assert session.scalar(linked.where(training_subjects.c.subject_id == subject["id"])) == 0
    # what is left of this user in storage: the generated images (a generation is its own resource), nothing else
    assert storage_keys(runtime, keys.user_prefix(user["id"])) == images
    assert not runtime.storage.exists(keys.training_state(training["id"]))
    assert storage_keys(runtime, "priors/") == priors  # shared by every subject of this base model: kept
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 404
    assert client.get(f"/v1/checkpoints/{checkpoint['id']}", headers=auth(user)).status_code == 404


def test_every_status_change_reaches_the_webhook_signed(
    client: httpx.Client, user: dict[str, str], runtime: Any, real_worker: Any, cpu_worker: Any,
    receiver_factory: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", True)
    monkeypatch.setattr(runtime.settings, "default_training_steps", 5)  # the shortcut trains with the default
    receiver = receiver_factory()
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in dog_photos()]
    fields = {"name": "Rex", "class_word": "dog", "train": "true", "webhook_url": receiver.url}
    created = client.post("/v1/subjects", data=fields, files=files, headers=auth(user))
    assert created.status_code == 201, created.text
    training = wait_job(client, user, f"/v1/trainings/{created.json()['training']['id']}", alive=real_worker)
    assert training["status"] == "succeeded", training["error"]
    assert training["progress"]["total"] == 5
    generation = client.post("/v1/generations", headers=auth(user), json={
        "prompt": "a dog", "checkpoints": [{"id": training["checkpoint_id"]}], "steps": 2,
        "webhook_url": receiver.url,
    }).json()  # fmt: skip
    wait_job(client, user, f"/v1/generations/{generation['id']}", alive=real_worker)
    receiver.wait_for(4, timeout=60)
    events: dict[str, dict[str, Any]] = {}
    for headers, body in receiver.requests:
        assert verify(user["secret"], headers, body), "bad signature"
        event = json.loads(body)
        events[event["type"]] = event["data"]
    assert set(events) == {"training.running", "training.succeeded", "generation.running", "generation.succeeded"}
    for kind, data in events.items():
        assert data["status"] == kind.split(".")[1]
    assert events["training.succeeded"]["checkpoint_id"] == training["checkpoint_id"]
    assert len(events["generation.succeeded"]["images"]) == 1
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert len(ids) == len(set(ids)) == 4  # one delivery per status change, none repeated
