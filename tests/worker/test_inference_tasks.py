from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from core import keys
from models import Edit, Generation, JobImage
from tests.api.helpers import finished_checkpoint, subject_with_photos, train
from tests.conftest import auth
from tests.images import dog
from tests.worker.fake_method import FakeMethod
from worker.lifecycle import run_job
from worker.tasks.inference import edit_work, export_lora_blob, generate_work


def test_generation_stores_images(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    subject = subject_with_photos(client, user)
    checkpoint_id = finished_checkpoint(runtime, train(client, user, [subject["id"]]).json()["id"], b"my shifts")
    body = {"prompt": "a sks dog", "num_images": 2, "seed": 40, "width": 128, "height": 96,
            "checkpoints": [{"id": checkpoint_id, "scale": 0.5}]}  # fmt: skip
    generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "succeeded"
    assert fake_method.checkpoints_seen == [(checkpoint_id, b"my shifts", 0.5)]
    done = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()
    assert done["status"] == "succeeded"
    assert [(i["seed"], i["width"], i["height"]) for i in done["images"]] == [(40, 128, 96), (41, 128, 96)]
    picture = Image.open(io.BytesIO(httpx.get(done["images"][1]["url"]).content))
    assert picture.format == "PNG" and picture.size == (128, 96)


def test_generation_with_a_deleted_checkpoint_fails(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    subject = subject_with_photos(client, user)
    checkpoint_id = finished_checkpoint(runtime, train(client, user, [subject["id"]]).json()["id"])
    body = {"prompt": "a sks dog", "checkpoints": [{"id": checkpoint_id}]}
    generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
    client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user))
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "failed"
    error = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()["error"]
    assert error["type"] == "LookupError"


def test_edit_stores_its_output(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    form = {"source_prompt": "a dog", "target_prompt": "a dog in snow", "seed": "5"}
    edit = client.post("/v1/edits", data=form, files=[("file", ("a.jpg", dog(0)))], headers=auth(user)).json()
    assert run_job(runtime, Edit, edit["id"], "w1", edit_work(runtime)) == "succeeded"
    done = client.get(f"/v1/edits/{edit['id']}", headers=auth(user)).json()
    assert done["status"] == "succeeded" and len(done["images"]) == 1 and done["images"][0]["seed"] == 5


def test_lora_export_writes_the_blob_the_api_streams(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    subject = subject_with_photos(client, user)
    checkpoint_id = finished_checkpoint(runtime, train(client, user, [subject["id"]]).json()["id"], b"S")
    marker = keys.checkpoint_lora(user["id"], checkpoint_id, 4) + keys.PENDING_SUFFIX
    runtime.storage.put(marker, b"0")
    export_lora_blob(runtime, checkpoint_id, 4)
    assert not runtime.storage.exists(marker)  # the export's "asked for" marker goes with it
    file = client.get(f"/v1/checkpoints/{checkpoint_id}/file?format=lora&rank=4", headers=auth(user))
    assert file.status_code == 200 and file.content == b"lora-r4:S"
    assert export_lora_blob(runtime, "no-such-checkpoint", 4) is None


def test_seeds_up_to_the_api_maximum_are_stored(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    body = {"prompt": "a dog", "num_images": 2, "seed": 2**32 - 1, "width": 64, "height": 64}
    generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "succeeded"
    done = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()
    assert [i["seed"] for i in done["images"]] == [2**32 - 1, 2**32]


def test_results_the_database_refuses_fail_the_job(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    def work(job: Any, progress: Any) -> Any:
        def write(session: Any, owned: Any) -> None:
            raise ValueError("results refused")

        return write

    generation = client.post("/v1/generations", json={"prompt": "a dog"}, headers=auth(user)).json()
    assert run_job(runtime, Generation, generation["id"], "w1", work) == "failed"
    done = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()
    assert done["status"] == "failed" and done["error"]["type"] == "ValueError"


@pytest.mark.parametrize(
    ("options", "pil_format", "content_type", "ext"),
    [
        ({}, "PNG", "image/png", ".png"),
        ({"output_format": "jpeg", "quality": 40}, "JPEG", "image/jpeg", ".jpg"),
        ({"output_format": "webp"}, "WEBP", "image/webp", ".webp"),
    ],
)
def test_generation_stores_and_serves_its_output_format(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod,
    options: dict[str, Any], pil_format: str, content_type: str, ext: str,
) -> None:  # fmt: skip
    body = {"prompt": "a dog", "num_images": 2, "seed": 3, "width": 96, "height": 64, **options}
    generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "succeeded"
    done = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()
    with runtime.sessions() as session:
        rows = session.scalars(select(JobImage).where(JobImage.job_id == generation["id"]).order_by(JobImage.index))
        stored = [(row.storage_key, row.size_bytes) for row in rows]
    for image, (key, size) in zip(done["images"], stored, strict=True):
        assert key.endswith(ext) and (image["format"], image["content_type"]) == (pil_format.lower(), content_type)
        data = runtime.storage.get(key)
        assert Image.open(io.BytesIO(data)).format == pil_format and len(data) == size
        served = httpx.get(image["url"])  # the presigned link of the S3 server
        assert served.headers["content-type"] == content_type and served.content == data
        assert Image.open(io.BytesIO(served.content)).size == (96, 64)


def test_generation_passes_its_scheduler_and_aspect_ratio(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    body = {"prompt": "a dog", "scheduler": "euler_a", "aspect_ratio": "16:9"}
    generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "succeeded"
    assert fake_method.generation_seen is not None
    assert (fake_method.generation_seen.scheduler, fake_method.generation_seen.aspect_ratio) == ("euler_a", "16:9")
    done = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()
    assert [(i["width"], i["height"]) for i in done["images"]] == [(88, 48)]  # 16:9 on a 64 px base


def test_a_generation_queued_before_the_options_runs_with_their_defaults(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    generation = client.post("/v1/generations", json={"prompt": "a dog", "seed": 1}, headers=auth(user)).json()
    with runtime.sessions() as session:
        row = session.get(Generation, generation["id"])
        assert row is not None
        row.params = {k: v for k, v in row.params.items()
                      if k not in ("scheduler", "output_format", "quality", "aspect_ratio")}  # fmt: skip
        session.commit()
    assert run_job(runtime, Generation, generation["id"], "w1", generate_work(runtime)) == "succeeded"
    assert fake_method.generation_seen is not None and fake_method.generation_seen.scheduler is None
    (image,) = client.get(f"/v1/generations/{generation['id']}", headers=auth(user)).json()["images"]
    assert (image["format"], image["width"]) == ("png", 64)
    assert Image.open(io.BytesIO(httpx.get(image["url"]).content)).format == "PNG"
