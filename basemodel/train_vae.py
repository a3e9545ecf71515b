"""Stage 1: the autoencoder, trained on base-world renders only (never the held-out shapes or patterns)."""

from __future__ import annotations

import logging
import time

import torch
from diffusers import AutoencoderKL

from basemodel.data import base_batch
from basemodel.models import make_vae

log = logging.getLogger(__name__)

KL_WEIGHT = 1e-6  # as in Stable Diffusion: a nearly free latent, rescaled afterwards by scaling_factor
CROP = 32  # the autoencoder is convolutional; 32-pixel crops cost a quarter of full frames per step


def _random_crops(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, height, width = images.shape
    ys = torch.randint(0, height - CROP + 1, (n,), generator=generator)
    xs = torch.randint(0, width - CROP + 1, (n,), generator=generator)
    return torch.stack([img[:, y : y + CROP, x : x + CROP] for img, y, x in zip(images, ys, xs, strict=True)])


def train_vae(seed: int, max_steps: int, minutes: float, batch_size: int = 32, lr: float = 1e-3) -> AutoencoderKL:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    vae = make_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    start = time.monotonic()
    for step in range(max_steps):
        images, _ = base_batch(seed, step, batch_size)
        crops = _random_crops(images, generator)
        posterior = vae.encode(crops).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        recon_loss = (reconstruction - crops).abs().mean() + (reconstruction - crops).pow(2).mean()
        loss = recon_loss + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        elapsed = time.monotonic() - start
        if step % 50 == 0:
            log.info("vae step %d loss %.4f (%.2f steps/s)", step, recon_loss.item(), (step + 1) / elapsed)
        if elapsed > minutes * 60:
            log.info("vae stops at step %d on its %.1f-minute budget", step, minutes)
            break
    vae.eval()
    set_scaling_factor(vae, seed)
    return vae


@torch.no_grad()
def set_scaling_factor(vae: AutoencoderKL, seed: int, n_images: int = 256) -> None:
    """Scale latents to unit variance, as SD's 0.18215 does for its own autoencoder."""
    images, _ = base_batch(seed + 10**8, 0, n_images)
    latents = vae.encode(images).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    log.info("vae scaling_factor %.4f", vae.config.scaling_factor)
