from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from core import keys
from models import Edit, Generation
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
