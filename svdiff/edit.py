"""Single-image editing: fine-tune shifts on one photo, DDIM-invert it, regenerate it with the target prompt.

The photo's prompt describes it (no rare token, no prior loss). Inversion runs with guidance 1, conditioned on the
target prompt, so the regenerated image keeps the photo's layout; `strength` adds fresh noise for larger edits,
either by slerp between the inverted latent and new noise or as DDIM eta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

from svdiff.batches import single_image_batch
from svdiff.checkpoint import Checkpoint
from svdiff.config import ShiftConfig
from svdiff.data import ImageSource, prepare_images
from svdiff.factorize import SVDCache
from svdiff.loop import Trainer
from svdiff.model import SpectralShiftModel
from svdiff.pipeline import ddim_scheduler, resolution
from svdiff.state import Canceled, Progress, ProgressCallback
from svdiff.train import clean_session, make_checkpoint, shift_model
from svdiff.train_config import TrainConfig

NoiseMode = Literal["slerp", "eta"]
DEFAULT_REFINEMENT = 3  # fixed-point iterations per inversion step; see ddim_invert


@dataclass
class EditResult:
    image: Image.Image
    checkpoint: Checkpoint  # the shifts fine-tuned on the photo
    seed: int


def slerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1), treating each tensor as one vector."""
    a_flat, b_flat = a.flatten().double(), b.flatten().double()
    cos = torch.dot(a_flat, b_flat) / (a_flat.norm() * b_flat.norm())
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if theta.abs() < 1e-6:
        return (1 - t) * a + t * b
    out = (torch.sin((1 - t) * theta) * a.double() + torch.sin(t * theta) * b.double()) / torch.sin(theta)
    return out.to(a.dtype)


def encode_image(pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 4, h, w) latents: the VAE posterior mean (deterministic), scaled."""
    vae = pipe.vae
    with torch.no_grad():
        latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    return latents * vae.config.scaling_factor


def _epsilon(scheduler: Any, output: torch.Tensor, sample: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    if scheduler.config.prediction_type == "epsilon":
        return output
    if scheduler.config.prediction_type == "v_prediction":
        return alpha.sqrt() * output + (1 - alpha).sqrt() * sample
    raise ValueError(f"cannot invert a model that predicts {scheduler.config.prediction_type!r}")


def _zero_snr_original(scheduler: Any, output: torch.Tensor) -> torch.Tensor:
    """x_0 as a v-predicting model's output gives it at zero SNR (it has no estimate there from noise alone)."""
    if scheduler.config.prediction_type == "v_prediction":
        return -output
    raise ValueError(f"a {scheduler.config.prediction_type!r} model has no estimate of x_0 at zero SNR")


@torch.no_grad()
def ddim_invert(pipe: Any, latents: torch.Tensor, prompt_embeds: torch.Tensor, steps: int, *,
                refinement: int = DEFAULT_REFINEMENT,
                callback: Callable[[int, int], bool | None] | None = None) -> torch.Tensor:
    """The x_T from which deterministic DDIM sampling (guidance 1, `steps` steps) returns to `latents`.

    Each inverse step solves x_t = sqrt(a_t) x0(x_s, eps(x_t)) + sqrt(1 - a_t) eps(x_t) for x_t, the exact inverse
    of the sampling step from t to s. Plain DDIM inversion (refinement=0) evaluates eps at x_s instead; each
    refinement is one fixed-point iteration with eps at the current x_t, keeping the iterate that moved least.
    Sample clipping must be off in the scheduler that samples from the result (it is not invertible).
    """
    with ddim_scheduler(pipe, clip_sample=False) as scheduler:
        scheduler.set_timesteps(steps, device=latents.device)
        alphas = scheduler.alphas_cumprod.to(latents.device)
        alpha_prev = torch.as_tensor(scheduler.final_alpha_cumprod, device=latents.device)
        sample = latents
        for index, timestep in enumerate(scheduler.timesteps.flip(0)):
            alpha = alphas[timestep]
            sample = _inverse_step(pipe, scheduler, sample, timestep, alpha, alpha_prev, prompt_embeds, refinement)
            alpha_prev = alpha
            if callback is not None and callback(index + 1, steps) is False:
                raise Canceled("inversion canceled")
    return sample


def _inverse_step(pipe: Any, scheduler: Any, sample: torch.Tensor, timestep: torch.Tensor, alpha: torch.Tensor,
                  alpha_prev: torch.Tensor, prompt_embeds: torch.Tensor, refinement: int) -> torch.Tensor:
    """x_t from x_s (s the lower noise level); see ddim_invert."""

    def step(at: torch.Tensor) -> torch.Tensor:
        output = pipe.unet(at, timestep, prompt_embeds).sample  # (N, 4, h, w)
        if alpha == 0:
            # A zero-terminal-SNR schedule's last step: the model's noise there is its input, whatever that is, so
            # solve the sampling step's other half instead, x_s = sqrt(a_s) x0(x_t) + sqrt(1 - a_s) x_t.
            return (sample - alpha_prev.sqrt() * _zero_snr_original(scheduler, output)) / (1 - alpha_prev).sqrt()
        eps = _epsilon(scheduler, output, at, alpha)
        original = (sample - (1 - alpha_prev).sqrt() * eps) / alpha_prev.sqrt()  # predicted x_0
        return alpha.sqrt() * original + (1 - alpha).sqrt() * eps

    guess, last_move = step(sample), math.inf
    for _ in range(refinement):
        updated = step(guess)
        move = float((updated - guess).norm())
        if move > last_move:  # the iteration diverges here: keep the last iterate
            break
        guess, last_move = updated, move
    return guess


def finetune(pipe: Any, model: SpectralShiftModel, pixels: torch.Tensor, prompt: str, config: TrainConfig,
             callback: ProgressCallback | None) -> float:
    """Train the shifts on the one photo; returns the last loss. Raises Canceled if the callback stops it."""
    trainer = Trainer(pipe, model, config, lambda generator: single_image_batch(pixels, prompt))
    outcome = trainer.run(callback)
    if outcome.canceled:
        raise Canceled("edit canceled during fine-tuning")
    return outcome.losses[-1] if outcome.losses else math.nan


def edit(pipe: Any, image: ImageSource, source_prompt: str, target_prompt: str, *,
         shifts: SpectralShiftModel | None = None, steps: int = 50, strength: float = 0.0,
         noise: NoiseMode = "slerp", finetune_steps: int = 300, lr: float = 1e-3, guidance_scale: float = 7.5,
         scale: float = 1.0, seed: int = 0, callback: ProgressCallback | None = None,
         inversion_refinement: int = DEFAULT_REFINEMENT, svd_cache: SVDCache | str | Path | None = None,
         base_model_name: str = "base") -> EditResult:
    """The photo, edited towards `target_prompt`. Progress counts fine-tuning, inversion and sampling steps.

    strength 0 regenerates from the exact inversion; up to 1 it slerps in fresh noise (`noise="slerp"`) or uses
    DDIM eta = strength (`noise="eta"`). `scale` scales the fine-tuned shifts when sampling.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError("strength must lie in [0, 1]")
    pixels = prepare_images([image], resolution(pipe))  # (1, 3, H, W)
    total = finetune_steps + 2 * steps
    config = TrainConfig(steps=finetune_steps, lr=lr, prior_preservation=False, cut_mix_unmix=False, flip=False,
                         seed=seed, checkpoint_every=0)

    def stage(offset: int) -> Callable[[int, int], bool | None]:
        def report(step: int, _: int) -> bool | None:
            return callback(Progress(offset + step, total, math.nan, 0.0)) if callback is not None else None
        return report

    def training_report(progress: Progress) -> bool | None:
        return callback(replace(progress, total=total)) if callback is not None else None

    with shift_model(pipe, shifts, ShiftConfig(), svd_cache) as model, clean_session(model):
        finetune(pipe, model, pixels, source_prompt, config, training_report)
        training = {**config.to_dict(), "edit": True, "source_prompt": source_prompt}
        checkpoint = make_checkpoint(model, list(model.layers), base_model_name, [], training)
        model.zero_()
        model.merge(checkpoint.shifts, scale)
        try:
            edited = _regenerate(pipe, pixels, target_prompt, steps, strength, noise, guidance_scale, seed,
                                 inversion_refinement, stage(finetune_steps), stage(finetune_steps + steps))
        finally:
            model.restore()
    return EditResult(edited, checkpoint, seed)


def _regenerate(pipe: Any, pixels: torch.Tensor, prompt: str, steps: int, strength: float, noise: NoiseMode,
                guidance_scale: float, seed: int, refinement: int, invert_callback: Callable[[int, int], bool | None],
                sample_callback: Callable[[int, int], bool | None]) -> Image.Image:
    latents = encode_image(pipe, pixels)  # (1, 4, h, w)
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, latents.device, 1, False)
    start = ddim_invert(pipe, latents, embeds, steps, refinement=refinement, callback=invert_callback)
    generator = torch.Generator().manual_seed(seed)
    eta = 0.0
    if strength > 0 and noise == "slerp":
        fresh = torch.randn(start.shape, generator=generator).to(start)
        start = slerp(strength, start, fresh)
    elif strength > 0:
        eta = strength
    canceled = False

    def on_step_end(pipeline: Any, index: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal canceled
        if sample_callback(index + 1, steps) is False:
            canceled, pipeline._interrupt = True, True
        return kwargs

    size = pixels.shape[-1]
    with ddim_scheduler(pipe, clip_sample=False), torch.no_grad():
        out = pipe(prompt=prompt, latents=start, num_inference_steps=steps, guidance_scale=guidance_scale, eta=eta,
                   generator=generator, height=size, width=size, output_type="pil", callback_on_step_end=on_step_end)
    if canceled:
        raise Canceled("edit canceled during sampling")
    return out.images[0]
