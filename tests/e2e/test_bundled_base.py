"""The bundled base model behind a real worker process: an example subject's photos, a short training, and an
image of the subject in a new scene, through the API."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from basemodel import BASE_MODEL_PATH, DEFAULT_GUIDANCE
from basemodel.vocab import RESERVED_TOKENS
from tests.conftest import ROOT, auth, start_worker, stop_worker
from tests.e2e.conftest import purge, real_worker_env, wait_job, worker_alive

pytestmark = pytest.mark.skipif(
    not (BASE_MODEL_PATH / "model_index.json").exists(), reason="the bundled base model is not built"
)


def test_example_subject_on_the_bundled_base_model(
    client: httpx.Client, user: dict[str, str], runtime: Any, service_env: dict[str, str], e2e_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert runtime.settings.base_model == str(BASE_MODEL_PATH)  # the default: nothing configured
    monkeypatch.setattr(runtime.settings, "min_photo_side", 64)  # the bundled model and its photos are 64x64
    purge(runtime, "training", "inference")
    env = real_worker_env(BASE_MODEL_PATH, e2e_data / "svd-bundled")
    proc = start_worker(service_env, "training,inference", env, name="real-bundled")
    alive = worker_alive(proc, e2e_data / "real-bundled.log")
    try:
        photos = sorted((ROOT / "examples" / "green-dotted-diamond").glob("*.png"))
        assert len(photos) == 4
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in photos]
        subject = client.post("/v1/subjects", data={"name": "diamond", "class_word": "diamond"}, files=files,
                              headers=auth(user)).json()
        assert subject["token"] in RESERVED_TOKENS  # a word no caption of the base model's training contains
        training = client.post("/v1/trainings", json={"subject_ids": [subject["id"]], "steps": 10},
                               headers=auth(user)).json()
        training = wait_job(client, user, f"/v1/trainings/{training['id']}", alive=alive)
        assert training["status"] == "succeeded", training["error"]
        prompt = f"a photo of a {subject['token']} diamond on the left, on a water background"
        body = {"prompt": prompt, "checkpoints": [{"id": training["checkpoint_id"]}], "steps": 5,
                "guidance_scale": DEFAULT_GUIDANCE}
        generation = client.post("/v1/generations", json=body, headers=auth(user)).json()
        generation = wait_job(client, user, f"/v1/generations/{generation['id']}", alive=alive)
    finally:
        stop_worker(proc)
    assert generation["status"] == "succeeded", generation["error"]
    (image,) = generation["images"]
    assert (image["width"], image["height"]) == (64, 64)
    png = Image.open(io.BytesIO(httpx.get(image["url"], timeout=30).content))
    assert png.size == (64, 64) and png.format == "PNG"
    checkpoint = client.get(f"/v1/checkpoints/{training['checkpoint_id']}", headers=auth(user)).json()
    assert checkpoint["base_model"] == str(BASE_MODEL_PATH) and 0 < checkpoint["size_bytes"] < 1_000_000
