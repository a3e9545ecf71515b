"""Single-image editing: DDIM inversion round trip, slerp, and the edit procedure with progress and cancel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from svdiff import attach, pipeline_components
from svdiff.data import prepare_images
from svdiff.edit import ddim_invert, edit, encode_image, slerp
from svdiff.state import Canceled
from tests.svdiff.photos import photo

PROMPT = "a photo of a red ball"


def stable_diffusion_like(pipe) -> None:
    """The SD 1.x scheduler, and a VAE scaling factor that gives unit-variance latents (how SD chose 0.18215)."""
    pipe.scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                   clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    raw = encode_image(pipe, prepare_images([photo(0, (200, 30, 30))], 16)) / pipe.vae.config.scaling_factor
    pipe.vae.register_to_config(scaling_factor=1.0 / raw.std().item())


def round_trip_error(pipe, latents: torch.Tensor, steps: int, refinement: int) -> float:
    """||regenerate(invert(z)) - z|| / ||z||, both with guidance 1 and the same prompt."""
    embeds, _ = pipe.encode_prompt(PROMPT, "cpu", 1, False)
    start = ddim_invert(pipe, latents, embeds, steps, refinement=refinement)
    with torch.no_grad():
        out = pipe(prompt=PROMPT, latents=start, num_inference_steps=steps, guidance_scale=1.0,
                   output_type="latent").images
    return float((out - latents).norm() / latents.norm())


def test_inversion_then_regeneration_reconstructs_the_latent(pipe):
    stable_diffusion_like(pipe)
    latents = encode_image(pipe, prepare_images([photo(1, (30, 200, 30))], 16))  # (1, 4, 8, 8), std about 1
    refined = round_trip_error(pipe, latents, steps=50, refinement=5)
    assert refined < 5e-3  # measured 4.1e-4 (refinement 0/1/2/3: 0.77 / 0.26 / 0.052 / 0.0095)
    plain = round_trip_error(pipe, latents, steps=50, refinement=0)
    assert plain > 10 * refined  # a random UNet is far from the smooth denoiser plain inversion assumes


def test_inversion_reconstructs_through_a_zero_terminal_snr_v_schedule(pipe):
    # The bundled base's schedule: at its last step the model's noise is its own input, so inverting it needs the
    # sampling step solved for x_T instead of the usual fixed point (which would return its guess unchanged).
    stable_diffusion_like(pipe)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, rescale_betas_zero_snr=True,
                                               prediction_type="v_prediction", timestep_spacing="trailing")
    assert pipe.scheduler.alphas_cumprod[-1] == 0
    latents = encode_image(pipe, prepare_images([photo(1, (30, 200, 30))], 16))
    # Measured at 10 steps: 1.2e-3, against 1.7e-2 with the usual fixed point at the last step.
    assert round_trip_error(pipe, latents, steps=10, refinement=5) < 5e-3


def test_slerp_endpoints_and_angle():
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(slerp(0.0, a, b), a)
    torch.testing.assert_close(slerp(1.0, a, b), b)
    b = b / b.norm() * a.norm()  # equal norms: slerp stays on the sphere
    mid = slerp(0.5, a, b)
    assert mid.norm().item() == pytest.approx(a.norm().item(), rel=1e-5)
    angle = lambda x, y: math.acos(float((x.flatten() @ y.flatten()) / (x.norm() * y.norm())))  # noqa: E731
    assert angle(a, mid) == pytest.approx(angle(mid, b), rel=1e-4)


def test_edit_reports_every_phase_and_returns_the_image(pipe, svd_cache):
    stable_diffusion_like(pipe)
    model = attach(pipeline_components(pipe), cache=svd_cache)
    image = photo(2, (200, 200, 30))
    steps: list[int] = []
    losses: list[float] = []

    def progress(p) -> None:
        steps.append(p.step)
        losses.append(p.loss)
        assert p.total == 3 + 2 * 5

    kept = edit(pipe, image, PROMPT, "a photo of a blue ball", shifts=model, steps=5, finetune_steps=3, seed=0,
                callback=progress)
    assert steps == list(range(1, 14)) and all(math.isfinite(x) for x in losses[:3])
    assert kept.image.size == (16, 16) and any(v.abs().max() > 0 for v in kept.checkpoint.shifts.values())
    assert not model.merged and all(not d.any() for d in model.parameters())
    noisier = edit(pipe, image, PROMPT, "a photo of a blue ball", shifts=model, steps=5, finetune_steps=3, seed=0,
                   strength=0.8)
    eta = edit(pipe, image, PROMPT, "a photo of a blue ball", shifts=model, steps=5, finetune_steps=3, seed=0,
               strength=0.8, noise="eta")
    base = np.asarray(kept.image, dtype=np.int16)
    assert np.abs(np.asarray(noisier.image, dtype=np.int16) - base).max() > 5
    assert np.abs(np.asarray(eta.image, dtype=np.int16) - base).max() > 5


def test_edit_cancel_raises_and_leaves_the_model_clean(pipe, svd_cache):
    model = attach(pipeline_components(pipe), cache=svd_cache)
    for stop_at in (2, 5):  # during fine-tuning, then during inversion
        with pytest.raises(Canceled):
            edit(pipe, photo(3, (0, 0, 0)), PROMPT, PROMPT, shifts=model, steps=4, finetune_steps=3,
                 callback=lambda p, stop=stop_at: p.step < stop)
        assert not model.merged and all(not d.any() for d in model.parameters())
