"""Loading a base pipeline for the method: any SD 1.x/2.x (or SDXL) hub id or local folder, DDIM, no safety checker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

SDXL_CLASS_NAMES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")
SCHEDULERS: dict[str, tuple[Any, dict[str, Any]]] = {  # name -> (class, overrides of the base's config)
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}


class PipelineError(ValueError):
    """A base model this library cannot use."""


def _class_name(base: str | Path) -> str | None:
    """The pipeline class a local folder declares in its model_index.json; None for a hub id."""
    index = Path(base) / "model_index.json"
    if not index.is_file():
        return None
    return str(json.loads(index.read_text()).get("_class_name", ""))


def load_pipeline(base: str | Path, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> Any:
    """The base pipeline, on `device` in `dtype`, with a DDIM scheduler built from its own scheduler config.

    SDXL folders load as StableDiffusionXLPipeline (sampling with shifts works; training is SD 1.x/2.x only).
    """
    kwargs: dict[str, Any] = {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
    class_name = _class_name(base)
    if class_name in SDXL_CLASS_NAMES:
        kwargs = {"dtype": dtype}
        pipe: Any = StableDiffusionXLPipeline.from_pretrained(str(base), **kwargs)  # type: ignore[attr-defined]
    elif class_name is not None:
        pipe = StableDiffusionPipeline.from_pretrained(str(base), **kwargs)
    else:
        pipe = DiffusionPipeline.from_pretrained(str(base), **kwargs)
    if not is_stable_diffusion(pipe):
        raise PipelineError(f"{base}: a {type(pipe).__name__} is not a Stable Diffusion pipeline")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def resolution(pipe: Any) -> int:
    """The image side the UNet was trained at: latent sample size times the VAE's downsampling."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def is_stable_diffusion(pipe: Any) -> bool:
    return isinstance(pipe, StableDiffusionPipeline | StableDiffusionXLPipeline)


def is_sdxl(pipe: Any) -> bool:
    return isinstance(pipe, StableDiffusionXLPipeline)


@contextmanager
def ddim_scheduler(pipe: Any, **overrides: Any) -> Iterator[Any]:
    """For the block, the pipeline's scheduler if it is DDIM (and no `overrides`), else a DDIM one from its config."""
    previous = pipe.scheduler
    if overrides or not isinstance(previous, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(previous.config, **overrides)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = previous


def make_scheduler(name: str, config: Any) -> Any:
    """A fresh scheduler `name` (a key of SCHEDULERS) from a scheduler `config`, keeping its training noise schedule
    (betas, timesteps, prediction type)."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    cls, overrides = SCHEDULERS[name]
    return cls.from_config(config, **overrides)


@contextmanager
def sampling_scheduler(pipe: Any, name: str | None) -> Iterator[Any]:
    """For the block, a fresh scheduler `name` built from the pipeline's own config (None: the pipeline's own);
    the pipeline's own scheduler object is back afterwards, so the choice never reaches the next call."""
    previous = pipe.scheduler
    if name is not None:
        pipe.scheduler = make_scheduler(name, previous.config)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = previous
