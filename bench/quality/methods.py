"""The three methods (and the untouched base) behind one interface: train on subjects, then sample prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from basemodel import BASE_MODEL_PATH, vocab
from basemodel.subjects import CONTROL_SUBJECTS, SUBJECTS
from basemodel.subjects import Subject as WorldSubject
from bench.quality.finetune import full_fine_tune, lora_fine_tune
from bench.quality.settings import Settings
from svdiff import BlobCache, SpectralShiftModel, Subject, TrainConfig, generate, load_pipeline, train
from svdiff.checkpoint import Checkpoint, serialize

# The held-out subjects first, so their tokens do not depend on the controls.
BENCH_SUBJECTS: dict[str, WorldSubject] = SUBJECTS | CONTROL_SUBJECTS
METHODS = ("base", "svdiff", "full", "lora")
LABELS = {"base": "base model (untuned)", "svdiff": "SVDiff (ours)", "full": "full fine-tuning (DreamBooth)",
          "lora": "LoRA r4 (PEFT)"}


@dataclass
class Tuned:
    method: str
    pipe: Any
    shifts: SpectralShiftModel | None = None
    checkpoint: Checkpoint | None = None
    seconds: float = 0.0  # training steps only
    checkpoint_bytes: int = 0  # trained values in safetensors, float32
    trainable: int = 0
    final_loss: float | None = None  # mean over the last 50 steps


def token_for(name: str) -> str:
    """A fixed reserved token per subject (its index in BENCH_SUBJECTS)."""
    return vocab.RESERVED_TOKENS[list(BENCH_SUBJECTS).index(name)]


def training_subject(subject: WorldSubject, settings: Settings) -> Subject:
    return Subject(token_for(subject.name), subject.class_word, list(subject.photos(settings.photos)))


def train_config(settings: Settings, **overrides: Any) -> TrainConfig:
    """svdiff's defaults, with the run's steps and seed; class images sampled as the model card recommends."""
    return TrainConfig(steps=settings.steps, num_class_images=settings.num_class_images,
                       class_image_steps=settings.sample_steps, class_image_guidance=settings.guidance,
                       seed=settings.seed, checkpoint_every=0, **overrides)


def _tail(losses: list[float]) -> float | None:
    tail = losses[-50:]
    return sum(tail) / len(tail) if tail else None


def train_svdiff(pipe: Any, shifts: SpectralShiftModel, subjects: list[WorldSubject], settings: Settings,
                 prior_cache: BlobCache, **overrides: Any) -> Tuned:
    norm_ratio = TrainConfig.lr_norm / TrainConfig.lr  # the paper's 1e-6 : 1e-3
    config = train_config(settings, lr=settings.svdiff_lr, lr_norm=settings.svdiff_lr * norm_ratio, **overrides)
    result = train(pipe, [training_subject(s, settings) for s in subjects], config,
                   shifts=shifts, prior_cache=prior_cache, base_model_name=Path(BASE_MODEL_PATH).name)
    checkpoint = result.checkpoint
    return Tuned("svdiff", pipe, shifts, checkpoint, result.seconds, len(serialize(checkpoint, dtype="float32")),
                 checkpoint.num_values(), _tail(result.losses))


def train_baseline(method: str, subjects: list[WorldSubject], settings: Settings, prior_cache: BlobCache,
                   base: Path = BASE_MODEL_PATH) -> Tuned:
    """Full fine-tuning or LoRA on a freshly loaded base pipeline (the resident SVDiff pipeline stays untouched)."""
    pipe = load_pipeline(base)
    data = [training_subject(s, settings) for s in subjects]
    config = train_config(settings)
    if method == "full":
        result = full_fine_tune(pipe, data, config, settings.full_lr, prior_cache)
    elif method == "lora":
        result = lora_fine_tune(pipe, data, config, settings.lora_lr, settings.lora_rank, prior_cache)
    else:
        raise ValueError(f"unknown baseline {method!r}")
    return Tuned(method, pipe, None, None, result.seconds, result.checkpoint_bytes, result.trainable,
                 _tail(result.losses))


def sample(tuned: Tuned, prompt: str, n: int, seed: int, settings: Settings) -> list[Image.Image]:
    """n images; image i from seed `seed + i`, so every method starts from the same noise for the same prompt."""
    checkpoints = [(tuned.checkpoint, 1.0)] if tuned.checkpoint is not None else []
    images = generate(tuned.pipe, tuned.shifts, prompt, checkpoints=checkpoints, num_images=n, seed=seed,
                      steps=settings.sample_steps, guidance_scale=settings.guidance)
    return [generated.image for generated in images]
