from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from svdiff import SpectralShiftModel, attach
from tests.svdiff.tiny import randomize_norms, tiny_pipeline, tiny_text_encoder, tiny_unet

# Tiny models gain nothing from threads, and oversubscribed cores slow them down a hundredfold.
torch.set_num_threads(1)


@pytest.fixture
def svd_cache(tmp_path: Path) -> Path:
    return tmp_path / "svd"


@pytest.fixture
def shifted(svd_cache: Path) -> SpectralShiftModel:
    """A tiny UNet and text encoder with spectral shifts on every layer."""
    unet, text_encoder = tiny_unet(), tiny_text_encoder()
    randomize_norms(unet, text_encoder)
    return attach({"unet": unet, "text_encoder": text_encoder}, cache=svd_cache)


def random_shifts(model: SpectralShiftModel, scale: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Shifts large enough that some singular values hit the relu at zero."""
    generator = torch.Generator().manual_seed(seed)
    shifts = {}
    for key, layer in model.layers.items():
        noise = torch.randn(layer.delta.shape, generator=generator)
        base = getattr(layer, "s", None)
        shifts[key] = noise * scale * (base.mean() if base is not None else 0.1)
    return shifts


@pytest.fixture
def make_shifts() -> Callable[..., dict[str, torch.Tensor]]:
    return random_shifts


@pytest.fixture
def pipe(tmp_path: Path) -> StableDiffusionPipeline:
    """The tiny pipeline with a 64-token context, long enough for Cut-Mix prompts (its tokenizer is per character)."""
    pipeline = tiny_pipeline(tmp_path / "pipe", max_length=64)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
