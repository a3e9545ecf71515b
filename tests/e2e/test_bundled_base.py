"""The bundled base model behind a real worker process: an example subject's photos, a short training, and an
image of the subject in a new scene, through the API and its Python SDK."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from svdiff_client import Client, Job

from basemodel import BASE_MODEL_PATH, DEFAULT_GUIDANCE
from basemodel.vocab import RESERVED_TOKENS
from tests.conftest import ROOT, start_worker, stop_worker
from tests.e2e.conftest import purge, real_worker_env, worker_alive

pytestmark = pytest.mark.skipif(
    not (BASE_MODEL_PATH / "model_index.json").exists(), reason="the bundled base model is not built"
)


def test_example_subject_on_the_bundled_base_model(
    live_api: str, user: dict[str, str], runtime: Any, service_env: dict[str, str], e2e_data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Through the Python SDK over real HTTP, as an app would: the jobs are followed on their live events."""
    assert runtime.settings.base_model == str(BASE_MODEL_PATH)  # the default: nothing configured
    monkeypatch.setattr(runtime.settings, "min_photo_side", 64)  # the bundled model and its photos are 64x64
    purge(runtime, "training", "inference")
    env = real_worker_env(BASE_MODEL_PATH, e2e_data / "svd-bundled")
    proc = start_worker(service_env, "training,inference", env, name="real-bundled")
    alive = worker_alive(proc, e2e_data / "real-bundled.log")
    seen: list[str] = []

    def follow(job: Job) -> None:
        alive()
        seen.append(f"{job.kind}:{job.status}:{job.progress.step}")

    try:
        with Client(user["Authorization"].removeprefix("Bearer "), live_api) as svdiff:
            photos = sorted((ROOT / "examples" / "green-dotted-diamond").glob("*.png"))
            assert len(photos) == 4
            subject = svdiff.subjects.create_with_photos("diamond", "diamond", photos)
            assert subject.token in RESERVED_TOKENS  # a word no caption of the base model's training contains
            training = svdiff.trainings.wait(svdiff.trainings.create([subject], steps=10), timeout=180,
                                             on_update=follow)  # fmt: skip
            prompt = f"a photo of a {subject.token} diamond on the left, on a water background"
            generation = svdiff.generations.create(prompt, [training], steps=5, guidance_scale=DEFAULT_GUIDANCE)
            generation = svdiff.generations.wait(generation, timeout=180, on_update=follow)
            (png_bytes,) = svdiff.generations.download_images(generation)
            assert training.checkpoint_id is not None
            checkpoint = svdiff.checkpoints.get(training.checkpoint_id)
    finally:
        stop_worker(proc)
    assert training.status == "succeeded" and generation.status == "succeeded"
    assert any(s.startswith("training:running") for s in seen)  # followed live, not only its end
    (image,) = generation.images
    assert (image.width, image.height) == (64, 64)
    png = Image.open(io.BytesIO(png_bytes))
    assert png.size == (64, 64) and png.format == "PNG"
    assert checkpoint.base_model == str(BASE_MODEL_PATH) and 0 < checkpoint.size_bytes < 1_000_000
