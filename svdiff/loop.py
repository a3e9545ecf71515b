"""The optimization loop shared by subject training and single-image editing.

One CPU torch.Generator drives every random choice (samples, flips, VAE sampling, noise, timesteps), so a run is
reproducible from its seed on any device, and a resumed run continues it exactly from the saved generator state.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import nn

from svdiff.attention import AttentionCapture, subject_weights, unmix_loss
from svdiff.model import SpectralShiftModel
from svdiff.state import Progress, ProgressCallback, TrainState, TrainStateError
from svdiff.targets import TEXT_ENCODER_COMPONENTS
from svdiff.train_config import TrainConfig, TrainConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Batch:
    pixels: torch.Tensor  # (N, 3, H, W) in [-1, 1]
    prompts: list[str]
    loss_weights: torch.Tensor  # (N,): each sample's weight in the denoising loss
    pairs: list[tuple[str, str] | None] = field(default_factory=list)  # (left, right) tokens of collages


@dataclass
class LoopOutcome:
    step: int  # the step the run reached
    canceled: bool
    losses: list[float]
    state: TrainState
    seconds: float


def trainable_layers(model: SpectralShiftModel, config: TrainConfig) -> list[str]:
    """Keys of the shift layers this run trains (text-encoder shifts only when train_text_encoder), then of the
    model's token rows when the config trains them."""
    keys = list(model.layers)
    if not config.train_text_encoder:
        keys = [k for k in keys if k.split(".", 1)[0] not in TEXT_ENCODER_COMPONENTS]
    return keys + (list(model.token_rows()) if config.token_rows else [])


def make_optimizer(model: SpectralShiftModel, keys: list[str], config: TrainConfig) -> torch.optim.AdamW:
    layers = [k for k in keys if k in model.layers]  # the rest are token rows
    chosen = {id(model.layers[k].delta) for k in layers}
    text = {id(model.layers[k].delta) for k in layers if k.split(".", 1)[0] in TEXT_ENCODER_COMPONENTS}
    groups = []
    for group in model.param_groups(config.lr, config.lr_norm):
        params = [p for p in group["params"] if id(p) in chosen]  # type: ignore[attr-defined]
        if config.lr_text is not None and group["name"] == "matrix":
            # The text encoder's singular values in a group of their own, at their own rate.
            own = [p for p in params if id(p) in text]
            params = [p for p in params if id(p) not in text]
            if own:
                groups.append({**group, "params": own, "lr": config.lr_text, "name": "text_matrix"})
        if params:
            groups.append({**group, "params": params})
    rows = [row for key, row in model.token_rows().items() if key in keys]
    if rows:
        groups.append({"params": rows, "lr": config.lr_rows, "name": "rows"})
    return torch.optim.AdamW(groups, betas=(0.9, 0.999), weight_decay=config.weight_decay)


def _autocast(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager[Any]:
    if mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[mixed_precision])


def _checkpointing_on(module: nn.Module) -> bool:
    if hasattr(module, "is_activation_checkpointing"):  # transformers
        return bool(module.is_activation_checkpointing)
    return bool(getattr(module, "is_gradient_checkpointing", False))  # diffusers


def _set_checkpointing(module: Any, enabled: bool) -> None:
    if hasattr(module, "enable_gradient_checkpointing"):  # diffusers
        switch = module.enable_gradient_checkpointing if enabled else module.disable_gradient_checkpointing
    elif hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5
        switch = module.activation_checkpointing_enable if enabled else module.activation_checkpointing_disable
    else:
        switch = module.gradient_checkpointing_enable if enabled else module.gradient_checkpointing_disable
    switch()


@contextlib.contextmanager
def gradient_checkpointing(pipe: Any, enabled: bool) -> Iterator[None]:
    """Gradient checkpointing in the UNet and text encoder for the run, back off afterwards if it was off."""
    modules = [m for m in (pipe.unet, getattr(pipe, "text_encoder", None)) if m is not None] if enabled else []
    switched = [m for m in modules if not _checkpointing_on(m)]
    try:
        for module in switched:
            _set_checkpointing(module, True)
        yield
    finally:
        for module in switched:
            _set_checkpointing(module, False)


def encode_prompts(pipe: Any, prompts: list[str], grad: bool) -> torch.Tensor:
    """(N, T, D) text embeddings, exactly as the pipeline computes them when sampling."""
    with torch.set_grad_enabled(grad):
        embeds, _ = pipe.encode_prompt(prompts, pipe.unet.device, 1, False)
    return embeds


def denoising_inputs(pipe: Any, noise_scheduler: Any, pixels: torch.Tensor,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy latents, timesteps, target): VAE-encode, draw noise and timesteps, and the target to predict."""
    vae = pipe.vae
    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
        latents = dist.sample(generator) * vae.config.scaling_factor  # (N, 4, h, w)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    timesteps = timesteps.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise TrainConfigError(f"cannot train a model that predicts {kind!r}")
    return noisy, timesteps, target


class Trainer:
    """One run: the optimizer, the generator, the loss, and the step loop with callbacks and resumable states."""

    def __init__(self, pipe: Any, model: SpectralShiftModel, config: TrainConfig,
                 make_batch: Callable[[torch.Generator], Batch], capture: AttentionCapture | None = None) -> None:
        self.pipe, self.model, self.config, self.make_batch, self.capture = pipe, model, config, make_batch, capture
        self.device: torch.device = pipe.unet.device
        if config.mixed_precision == "fp16" and self.device.type != "cuda":
            raise TrainConfigError("fp16 mixed precision needs a CUDA device (use bf16 or no)")
        self.keys = trainable_layers(model, config)
        rows = model.token_rows()
        self.params: list[nn.Parameter] = [model.layers[k].delta if k in model.layers else rows[k] for k in self.keys]
        model.requires_grad_(False)
        for param in self.params:
            param.requires_grad_(True)
        self.optimizer = make_optimizer(model, self.keys, config)
        # Loss scaling whenever gradients pass through float16 activations: fp16 autocast or a float16 pipeline.
        half = config.mixed_precision == "fp16" or pipe.unet.dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=half and self.device.type == "cuda")
        self.generator = torch.Generator().manual_seed(config.seed)
        self.noise_scheduler: Any = DDPMScheduler.from_config(pipe.scheduler.config)
        self.train_text = any(k.split(".", 1)[0] in TEXT_ENCODER_COMPONENTS for k in self.keys)  # rows too
        self.step, self.elapsed = 0, 0.0
        self.losses: list[float] = []

    def resume(self, state: TrainState) -> None:
        if state.fingerprint != self.model.fingerprint:
            raise TrainStateError("the training state was made on another base model")
        if state.step > self.config.steps:
            raise TrainStateError(f"the state is at step {state.step}, past this run's {self.config.steps} steps")
        self.model.load_shifts(state.shifts, strict=False)
        self.optimizer.load_state_dict(state.optimizer)
        self.generator.set_state(state.generator)
        if state.scaler:
            self.scaler.load_state_dict(state.scaler)
        self.step, self.elapsed, self.losses = state.step, state.elapsed, list(state.losses)

    def state(self) -> TrainState:
        return TrainState(step=self.step, shifts=self.model.shifts(), optimizer=self.optimizer.state_dict(),
                          generator=self.generator.get_state(), fingerprint=self.model.fingerprint,
                          elapsed=self.elapsed, losses=list(self.losses),
                          scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None)

    def loss(self, batch: Batch) -> torch.Tensor:
        noisy, timesteps, target = denoising_inputs(self.pipe, self.noise_scheduler, batch.pixels, self.generator)
        use_unmix = self.capture is not None and any(p is not None for p in batch.pairs)
        with _autocast(self.device, self.config.mixed_precision):
            embeds = encode_prompts(self.pipe, batch.prompts, grad=self.train_text)
            recording: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if self.capture is not None and not use_unmix:
                self.capture.clear()
            if use_unmix:
                assert self.capture is not None
                weights = subject_weights(self.pipe.tokenizer, batch.prompts, batch.pairs)  # (N, 2, K)
                recording = self.capture.recording(weights)
            with recording as maps:
                prediction = self.pipe.unet(noisy, timesteps, embeds.to(noisy.dtype)).sample  # (N, 4, h, w)
        mse = (prediction.float() - target.float()).square().mean(dim=(1, 2, 3))  # (N,)
        loss = (mse * batch.loss_weights.to(mse)).sum()
        if use_unmix:
            collage = torch.tensor([p is not None for p in batch.pairs])
            loss = loss + self.config.unmix_weight * unmix_loss(maps, collage, (noisy.shape[-2], noisy.shape[-1]))
        return loss

    def train_step(self) -> float:
        loss = self.loss(self.make_batch(self.generator))
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def run(self, callback: ProgressCallback | None = None,
            on_state: Callable[[TrainState], None] | None = None) -> LoopOutcome:
        started, canceled = time.perf_counter(), False
        base_elapsed = self.elapsed
        with gradient_checkpointing(self.pipe, self.config.gradient_checkpointing):
            while self.step < self.config.steps:
                loss = self.train_step()
                self.step += 1
                self.losses.append(loss)
                self.elapsed = base_elapsed + time.perf_counter() - started
                every = self.config.checkpoint_every
                if on_state is not None and every > 0 and self.step % every == 0 and self.step < self.config.steps:
                    on_state(self.state())
                progress = Progress(self.step, self.config.steps, loss, self.elapsed)
                if callback is not None and callback(progress) is False:
                    canceled = self.step < self.config.steps
                    break
        seconds = time.perf_counter() - started
        return LoopOutcome(self.step, canceled, list(self.losses), self.state(), seconds)
