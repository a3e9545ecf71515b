"""Sampling from a base pipeline plus zero or more checkpoints, each with a scale.

One request: the checkpoints' scaled shifts are combined (svdiff.combine), merged into the weights, and the plain
pipeline samples; the base weights are restored afterwards. Several requests: `generate_batch` either merges once
per distinct combination ("merge") or runs every request in one batch with per-sample shifts ("per_sample"); see
`choose_mode` for when each is faster.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from PIL import Image

from svdiff.checkpoint import Checkpoint, check_compatible
from svdiff.combine import combine
from svdiff.model import Shifts, SpectralShiftModel
from svdiff.pipeline import resolution, sampling_scheduler
from svdiff.state import Canceled

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 7.5
PER_SAMPLE_MAX_WORK = 1e8  # UNet parameters x latent positions; see choose_mode
StepCallback = Callable[[int, int], bool | None]  # (step, total); returning False cancels
BatchMode = Literal["auto", "merge", "per_sample"]


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int  # regenerates this image alone with num_images=1


@dataclass
class GenerationRequest:
    prompt: str
    checkpoints: list[tuple[Checkpoint, float]] = field(default_factory=list)
    negative_prompt: str | None = None
    num_images: int = 1
    seed: int | None = None


def combined_shifts(model: SpectralShiftModel | None, checkpoints: Sequence[tuple[Checkpoint, float]]) -> Shifts | None:
    """sum_i scale_i * delta_i of the checkpoints, each checked against the model; None for no checkpoints."""
    if not checkpoints:
        return None
    if model is None:
        raise ValueError("checkpoints need the pipeline's SpectralShiftModel")
    for checkpoint, _ in checkpoints:
        check_compatible(checkpoint, model)
    return combine([c.shifts for c, _ in checkpoints], [scale for _, scale in checkpoints])


@contextmanager
def merged(model: SpectralShiftModel | None, shifts: Shifts | None) -> Iterator[None]:
    """Sample with `shifts` baked into the weights, zero shifts in every layer they leave out (None: the base).

    Merging every layer costs one weight rebuild per layer per call; an unmerged layer would rebuild its weight
    from its delta at every denoising step. A zero shift merges to the exact base weight. The exact base weights
    come back afterwards.
    """
    if model is None:
        yield
        return
    given = shifts or {}
    zeros = {key: torch.zeros_like(layer.delta) for key, layer in model.layers.items() if key not in given}
    model.merge(dict(given) | zeros)  # token rows too
    try:
        yield
    finally:
        model.restore()


def _seeds(seed: int | None, count: int) -> list[int]:
    first = secrets.randbelow(2**31) if seed is None else seed
    return [first + i for i in range(count)]


def _run(pipe: Any, prompts: list[str], negatives: list[str] | None, seeds: list[int], *, steps: int | None,
         guidance_scale: float | None, width: int | None, height: int | None, callback: StepCallback | None,
         scheduler: str | None = None) -> list[Image.Image]:
    total = steps or DEFAULT_STEPS
    canceled = False

    def on_step_end(pipeline: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal canceled
        if callback is not None and callback(index + 1, total) is False:
            canceled = True
            pipeline._interrupt = True  # the pipeline skips its remaining steps
        return kwargs

    size = resolution(pipe)
    with sampling_scheduler(pipe, scheduler), torch.no_grad():
        out = pipe(prompt=prompts, negative_prompt=negatives, num_inference_steps=total,
                   guidance_scale=DEFAULT_GUIDANCE if guidance_scale is None else guidance_scale,
                   width=width or size, height=height or size, output_type="pil",
                   generator=[torch.Generator().manual_seed(s) for s in seeds], callback_on_step_end=on_step_end)
    if canceled:
        raise Canceled("generation canceled")
    return list(out.images)


def generate(pipe: Any, shifts_model: SpectralShiftModel | None, prompt: str, *,
             checkpoints: Sequence[tuple[Checkpoint, float]] = (), negative_prompt: str | None = None,
             num_images: int = 1, seed: int | None = None, steps: int | None = None,
             guidance_scale: float | None = None, width: int | None = None, height: int | None = None,
             callback: StepCallback | None = None, scheduler: str | None = None) -> list[GeneratedImage]:
    """`num_images` images of `prompt`; image i uses seed `seed + i` (a random seed when None).

    `scheduler`: a name of `svdiff.pipeline.SCHEDULERS` for this call only (None: the pipeline's own).

    Raises Canceled when `callback` returns False; the base weights are restored either way.
    """
    if num_images < 1:
        raise ValueError("num_images must be at least 1")
    seeds = _seeds(seed, num_images)
    negatives = [negative_prompt] * num_images if negative_prompt is not None else None
    with merged(shifts_model, combined_shifts(shifts_model, checkpoints)):
        images = _run(pipe, [prompt] * num_images, negatives, seeds, steps=steps, guidance_scale=guidance_scale,
                      width=width, height=height, callback=callback, scheduler=scheduler)
    return [GeneratedImage(image, s) for image, s in zip(images, seeds, strict=True)]


def _combination(request: GenerationRequest) -> tuple[tuple[int, float], ...]:
    return tuple((id(checkpoint), scale) for checkpoint, scale in request.checkpoints)


def choose_mode(requests: Sequence[GenerationRequest], pipe: Any, width: int | None = None,
                height: int | None = None) -> Literal["merge", "per_sample"]:
    """Which batching is faster, from CPU measurements (README "Method notes").

    One combination of checkpoints: always one merge. Several: per-sample shifts save a merge and a pipeline call
    per combination but make every shifted layer run its factors too (about twice the FLOPs), so on the CPU they
    win only while the per-image work is small: UNet parameters x latent positions below PER_SAMPLE_MAX_WORK
    (measured crossover between 0.8M params at 8x8 latents, per-sample 30% faster, and at 16x16, equal). GPUs
    were not measured; there "merge" is kept, which never adds FLOPs.
    """
    if len({_combination(r) for r in requests}) == 1 or pipe.unet.device.type != "cpu":
        return "merge"
    scale = pipe.vae_scale_factor
    positions = ((height or resolution(pipe)) // scale) * ((width or resolution(pipe)) // scale)
    work = sum(p.numel() for p in pipe.unet.parameters()) * positions
    return "per_sample" if work < PER_SAMPLE_MAX_WORK else "merge"


def generate_batch(pipe: Any, shifts_model: SpectralShiftModel | None, requests: Sequence[GenerationRequest], *,
                   steps: int | None = None, guidance_scale: float | None = None, width: int | None = None,
                   height: int | None = None, callback: StepCallback | None = None, mode: BatchMode = "auto",
                   scheduler: str | None = None) -> list[list[GeneratedImage]]:
    """The images of several requests (one list per request), sharing steps, guidance, size and scheduler."""
    if not requests:
        return []
    if mode == "auto":
        mode = choose_mode(requests, pipe, width, height)
    seeds = [_seeds(r.seed, r.num_images) for r in requests]
    options: dict[str, Any] = {"steps": steps, "guidance_scale": guidance_scale, "width": width, "height": height,
                               "callback": callback, "scheduler": scheduler}
    if mode == "per_sample":
        images = _per_sample(pipe, shifts_model, requests, seeds, options)
    else:
        images = _merged_groups(pipe, shifts_model, requests, seeds, options)
    return [[GeneratedImage(i, s) for i, s in zip(imgs, ss, strict=True)] for imgs, ss in zip(images, seeds,
                                                                                              strict=True)]


def _expand(requests: Sequence[GenerationRequest]) -> tuple[list[str], list[str] | None]:
    prompts = [r.prompt for r in requests for _ in range(r.num_images)]
    if all(r.negative_prompt is None for r in requests):
        return prompts, None
    return prompts, [r.negative_prompt or "" for r in requests for _ in range(r.num_images)]


def _split(images: list[Image.Image], requests: Sequence[GenerationRequest]) -> list[list[Image.Image]]:
    out, start = [], 0
    for request in requests:
        out.append(images[start : start + request.num_images])
        start += request.num_images
    return out


def _merged_groups(pipe: Any, model: SpectralShiftModel | None, requests: Sequence[GenerationRequest],
                   seeds: list[list[int]], options: dict[str, Any]) -> list[list[Image.Image]]:
    """One merge and one pipeline call per distinct checkpoint combination."""
    results: list[list[Image.Image]] = [[] for _ in requests]
    groups: dict[tuple[tuple[int, float], ...], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(_combination(request), []).append(index)
    for indices in groups.values():
        members = [requests[i] for i in indices]
        prompts, negatives = _expand(members)
        with merged(model, combined_shifts(model, members[0].checkpoints)):
            images = _run(pipe, prompts, negatives, [s for i in indices for s in seeds[i]], **options)
        for index, chunk in zip(indices, _split(images, members), strict=True):
            results[index] = chunk
    return results


def _per_sample(pipe: Any, model: SpectralShiftModel | None, requests: Sequence[GenerationRequest],
                seeds: list[list[int]], options: dict[str, Any]) -> list[list[Image.Image]]:
    """Every request in one batch; sample i of each forward uses its own request's combined shifts."""
    if model is None:
        raise ValueError("per-sample shifts need the pipeline's SpectralShiftModel")
    combined = [combined_shifts(model, r.checkpoints) for r in requests]
    per_image: list[Shifts | None] = [c for c, r in zip(combined, requests, strict=True) for _ in range(r.num_images)]
    prompts, negatives = _expand(requests)
    with model.per_sample(list(per_image)):
        images = _run(pipe, prompts, negatives, [s for ss in seeds for s in ss], **options)
    return _split(images, requests)
