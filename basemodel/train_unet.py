"""Stage 2: the UNet and the text encoder, trained jointly from scratch on base-world captions."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from basemodel.models import make_text_encoder, make_train_scheduler, make_unet
from basemodel.prefetch import LatentBatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UNetTraining:
    seed: int = 1
    max_steps: int = 100_000
    minutes: float = 132.0  # the default budget of `make base-model` (basemodel.build.DEFAULT_MINUTES)
    batch_size: int = 32
    lr: float = 8e-4
    warmup_steps: int = 200
    caption_dropout: float = 0.1  # empty captions teach the unconditional branch of classifier-free guidance
    min_snr_gamma: float = 5.0  # Min-SNR weighting (Hang et al. 2023): faster convergence at this budget
    # Each capped by (1 + step) / (10 + step): a fixed 0.999 would still average in the first thousand steps'
    # weights at the end of a run this short. The build keeps the live weights too and ships whichever of them
    # follows validation prompts best (basemodel.build).
    ema_decays: tuple[float, ...] = (0.999, 0.995)
    snapshot_minutes: float = 10.0


@dataclass
class Denoiser:
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel


@dataclass
class Trained:
    """The weights a UNet run ends with: the live ones and an exponential moving average per decay."""

    live: Denoiser
    ema: dict[float, Denoiser]
    steps: int

    def candidates(self) -> dict[str, Denoiser]:
        return {**{f"ema-{decay}": weights for decay, weights in self.ema.items()}, "live": self.live}


def _ema_update(ema: Denoiser, live: Denoiser, decay: float) -> None:
    with torch.no_grad():
        for module_ema, module in ((ema.unet, live.unet), (ema.text_encoder, live.text_encoder)):
            for p_ema, p in zip(module_ema.parameters(), module.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - decay)


def _lr_factor(config: UNetTraining, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay to 10% over the run's progress (the larger of steps and time used)."""
    warm = min(1.0, (step + 1) / config.warmup_steps)
    return warm * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def min_snr_weights(alphas_cumprod: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-timestep loss weights: Min-SNR (Hang et al. 2023), i.e. min(SNR, gamma) on the clean latents' error,
    written for the target the UNet predicts. For v, whose error is (1 + SNR) times the clean latents', this is
    (min(SNR, gamma) + 1) / (SNR + 1): the plus one keeps the zero-SNR step (weight 0 otherwise), the only one
    where the layout must come from the prompt."""
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    if prediction_type == "epsilon":
        return torch.clamp(snr, max=gamma) / snr
    if prediction_type == "v_prediction":
        return (torch.clamp(snr, max=gamma) + 1.0) / (snr + 1.0)
    raise ValueError(f"no Min-SNR weights for {prediction_type!r}")


def train_unet(
    config: UNetTraining,
    batches: Iterator[LatentBatch],
    tokenizer: CLIPTokenizer,
    snapshot: Callable[[Denoiser, int], None],
    init: Denoiser | None = None,
) -> Trained:
    """Train on `batches` (basemodel.prefetch.latent_batches with this config's seed and batch size), calling
    `snapshot(weights, step)` with the first EMA's weights every `snapshot_minutes`; from `init`'s weights when
    given (a continued build), else from scratch."""
    torch.manual_seed(config.seed)
    live = init if init is not None else Denoiser(make_unet(), make_text_encoder(tokenizer))
    live.unet.train()
    live.text_encoder.train()
    emas = {decay: copy.deepcopy(live) for decay in config.ema_decays}
    scheduler = make_train_scheduler()
    alphas = scheduler.alphas_cumprod
    loss_weight = min_snr_weights(alphas, config.min_snr_gamma, scheduler.config.prediction_type)
    epsilon = scheduler.config.prediction_type == "epsilon"
    params = [*live.unet.parameters(), *live.text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(config.seed)
    start = last_snapshot = time.monotonic()
    done = 0
    for step, (latents, captions) in zip(range(config.max_steps), batches, strict=False):
        elapsed = time.monotonic() - start
        progress = max(step / config.max_steps, elapsed / (config.minutes * 60))
        if progress >= 1.0 and step > 0:  # at least one step, however slowly the first batch came
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * _lr_factor(config, step, progress)
        drop = torch.rand(len(captions), generator=generator) < config.caption_dropout
        captions = ["" if dropped else text for text, dropped in zip(captions, drop.tolist(), strict=True)]
        ids = tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(captions),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        prediction = live.unet(noisy, timesteps, live.text_encoder(ids)[0]).sample
        target = noise if epsilon else scheduler.get_velocity(latents, noise, timesteps)
        per_sample = (prediction - target).pow(2).mean(dim=(1, 2, 3))
        loss = (loss_weight[timesteps] * per_sample).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        done = step + 1
        for decay, ema in emas.items():
            _ema_update(ema, live, min(decay, (1.0 + step) / (10.0 + step)))
        if step % 25 == 0:
            log.info("unet step %d loss %.4f lr %.2e (%.2f steps/s)", step, loss.item(),
                     optimizer.param_groups[0]["lr"], (step + 1) / (time.monotonic() - start))  # fmt: skip
        if time.monotonic() - last_snapshot > config.snapshot_minutes * 60:
            snapshot(emas[config.ema_decays[0]], step)
            last_snapshot = time.monotonic()
    log.info("unet stops after %d steps, %.1f minutes", done, (time.monotonic() - start) / 60)
    return Trained(live, emas, done)
