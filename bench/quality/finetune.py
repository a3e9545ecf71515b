"""Full fine-tuning and LoRA with svdiff's own training loop: only the trainable parameters differ.

`ParamTrainer` is `svdiff.loop.Trainer` with its shift-specific set-up replaced by a plain parameter list: the
batches (`svdiff.batches.subject_batch` over `svdiff.train.prepare_subjects`: photos, flips, prompts, cached prior
images), the loss (`Trainer.loss`: VAE latents, noise, timesteps, prior-weighted MSE), the step (gradient clipping)
and the loop with its seeded generator are svdiff's, unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import torch
from diffusers import DDPMScheduler
from peft import LoraConfig
from safetensors.torch import save as save_bytes
from torch import nn

from svdiff import BlobCache, Subject, TrainConfig, TrainState
from svdiff.batches import subject_batch
from svdiff.loop import Trainer
from svdiff.train import prepare_subjects, prior_fingerprint

UNET_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


class ParamTrainer(Trainer):
    """svdiff's Trainer over any parameters with one learning rate (AdamW with the config's betas and decay)."""

    def __init__(self, pipe: Any, params: list[nn.Parameter], lr: float, config: TrainConfig, data: list[Any],
                 train_text: bool) -> None:
        # Not Trainer.__init__: that one builds the optimizer from spectral shifts. Same attributes, same values.
        self.pipe, self.model, self.config, self.capture = pipe, None, config, None  # type: ignore[assignment]
        self.make_batch = lambda generator: subject_batch(data, config, generator)
        self.device = pipe.unet.device
        self.keys = []
        for module in (pipe.unet, pipe.text_encoder, pipe.vae):
            module.requires_grad_(False)
        for param in params:
            param.requires_grad_(True)
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.train_text = train_text
        self.step, self.elapsed = 0, 0.0
        self.losses = []

    def state(self) -> TrainState:  # nothing to resume: the benchmark keeps the trained modules
        return TrainState(step=self.step, shifts={}, optimizer={}, generator=self.generator.get_state(),
                          fingerprint="", elapsed=self.elapsed, losses=list(self.losses))


@dataclass
class FineTuneResult:
    seconds: float  # the training steps only (prior images come from the cache)
    losses: list[float]
    checkpoint_bytes: int  # the trained tensors in safetensors, float32
    trainable: int


def base_fingerprint(pipe: Any) -> str:
    """The key svdiff.train caches class images under, computed from the plain (unshifted) components."""
    return prior_fingerprint(pipe, SimpleNamespace(stats=SimpleNamespace(fingerprints={})))  # type: ignore[arg-type]


def _prepare(pipe: Any, subjects: list[Subject], config: TrainConfig, prior_cache: BlobCache) -> list[Any]:
    """Photos and class images exactly as svdiff.train prepares them; call it before adding any adapter."""
    data, _ = prepare_subjects(pipe, subjects, config, base_fingerprint(pipe), prior_cache)
    return data


OnBudget = Callable[["FineTuneResult", int], None]


def _fine_tune(pipe: Any, data: list[Any], named: dict[str, nn.Parameter], lr: float, config: TrainConfig,
               train_text: bool, budgets: Sequence[int], on_budget: OnBudget | None) -> FineTuneResult:
    """Train to each budget in turn (one run, paused), calling `on_budget(result so far, budget)` at each."""
    trainer = ParamTrainer(pipe, list(named.values()), lr, config, data, train_text)
    checkpoint_bytes = len(save_bytes({name: p.detach().float().contiguous() for name, p in named.items()}))
    trainable = sum(p.numel() for p in named.values())
    seconds, result = 0.0, None
    for budget in budgets or (config.steps,):
        trainer.config = replace(config, steps=budget)
        started = time.perf_counter()
        outcome = trainer.run()
        seconds += time.perf_counter() - started
        result = FineTuneResult(seconds, outcome.losses, checkpoint_bytes, trainable)
        if on_budget is not None:
            on_budget(result, budget)
    for param in named.values():
        param.requires_grad_(False)
    assert result is not None
    return result


def full_fine_tune(pipe: Any, subjects: list[Subject], config: TrainConfig, lr: float, prior_cache: BlobCache,
                   budgets: Sequence[int] = (), on_budget: OnBudget | None = None) -> FineTuneResult:
    """DreamBooth: every UNet and text-encoder weight trains (the VAE stays frozen)."""
    data = _prepare(pipe, subjects, config, prior_cache)
    named = {f"unet.{n}": p for n, p in pipe.unet.named_parameters()}
    if config.train_text_encoder:
        named |= {f"text_encoder.{n}": p for n, p in pipe.text_encoder.named_parameters()}
    return _fine_tune(pipe, data, named, lr, config, config.train_text_encoder, budgets, on_budget)


def lora_fine_tune(pipe: Any, subjects: list[Subject], config: TrainConfig, lr: float, rank: int,
                   prior_cache: BlobCache, budgets: Sequence[int] = (),
                   on_budget: OnBudget | None = None) -> FineTuneResult:
    """LoRA adapters (PEFT) on the attention projections of the UNet and the text encoder; the base stays frozen."""
    data = _prepare(pipe, subjects, config, prior_cache)
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                     target_modules=UNET_LORA_TARGETS))
    modules = {"unet": pipe.unet}
    if config.train_text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                                 target_modules=TEXT_LORA_TARGETS))
        modules["text_encoder"] = pipe.text_encoder
    named = {f"{c}.{n}": p for c, module in modules.items() for n, p in module.named_parameters() if "lora_" in n}
    if not named:
        raise RuntimeError("PEFT added no LoRA parameters")
    return _fine_tune(pipe, data, named, lr, config, config.train_text_encoder, budgets, on_budget)
