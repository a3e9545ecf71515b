"""Generation options on the real method runtime and the bundled base model (64 px, 3 steps): each scheduler
samples, differs from another for the same seed, and never outlives its request; aspect ratios give their sizes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basemodel import BASE_MODEL_PATH
from worker import method
from worker.svdiff_runtime import MethodRuntime

pytestmark = pytest.mark.skipif(
    not (BASE_MODEL_PATH / "model_index.json").exists(), reason="the bundled base model is not built"
)
PROMPT = "a red striped star on the left, on a grass background"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MethodRuntime]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small kernels on a shared CPU
    yield MethodRuntime(str(BASE_MODEL_PATH), svd_cache=Path(tmp_path_factory.mktemp("svd")))
    torch.set_num_threads(threads)


def sample(runtime: MethodRuntime, scheduler: str | None = None, aspect_ratio: str | None = None,
           progress: method.ProgressFn = lambda step, total: True) -> np.ndarray:  # fmt: skip
    request = method.GenerationInput(PROMPT, None, 1, seed=11, steps=3, guidance_scale=4.0, width=None, height=None,
                                     scheduler=scheduler, aspect_ratio=aspect_ratio)  # fmt: skip
    (image,) = runtime.generate(request, [], progress=progress)
    pixels = np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB"), dtype=np.int16)  # (H, W, 3)
    assert pixels.shape == (image.height, image.width, 3)
    return pixels


def test_each_scheduler_samples_its_own_image_and_the_default_stays(runtime: MethodRuntime) -> None:
    own = runtime.pipe.scheduler
    assert type(own).__name__ == "DDIMScheduler"  # the pipeline's own: the documented default
    default = sample(runtime)
    images = {name: sample(runtime, name) for name in ("ddim", "dpm++", "euler_a")}
    assert np.array_equal(images["ddim"], default)  # DDIM from the same config: the default's image
    for name in ("dpm++", "euler_a"):
        assert images[name].shape == (64, 64, 3) and images[name].std() > 1  # an image, not a blank
        assert np.abs(images[name] - images["ddim"]).mean() > 1, name
    assert np.abs(images["dpm++"] - images["euler_a"]).mean() > 1
    assert runtime.pipe.scheduler is own  # no request's choice leaks into the next
    assert np.array_equal(sample(runtime), default)


def test_a_canceled_request_restores_the_scheduler(runtime: MethodRuntime) -> None:
    own = runtime.pipe.scheduler
    with pytest.raises(method.Canceled):
        sample(runtime, "euler_a", progress=lambda step, total: step < 2)
    assert runtime.pipe.scheduler is own


@pytest.mark.parametrize(("ratio", "size"), [("1:1", (64, 64)), ("4:3", (72, 56)), ("9:16", (48, 88))])
def test_aspect_ratios_sample_their_mapped_size(runtime: MethodRuntime, ratio: str, size: tuple[int, int]) -> None:
    height, width = sample(runtime, "dpm++", aspect_ratio=ratio).shape[:2]
    assert (width, height) == size
