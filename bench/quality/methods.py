"""The three methods (and the untouched base) behind one interface: train on subjects, then sample prompts.

Every method trains along a ladder of step budgets: one run, paused at each budget for `on_budget` (which samples
and scores it), then continued. Learning rates are constant, so the model at a budget is exactly what a run of
that many steps would have made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from basemodel import BASE_MODEL_PATH, vocab
from basemodel.subjects import SUBJECTS
from basemodel.subjects import Subject as WorldSubject
from bench.quality.finetune import FineTuneResult, full_fine_tune, lora_fine_tune
from bench.quality.settings import Settings
from svdiff import BlobCache, SpectralShiftModel, Subject, TrainConfig, TrainState, generate, load_pipeline, train
from svdiff.checkpoint import Checkpoint, serialize

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
    steps: int = 0


OnBudget = Callable[[Tuned], None]


def token_for(name: str) -> str:
    """A fixed reserved token per subject (its index in SUBJECTS)."""
    return vocab.RESERVED_TOKENS[list(SUBJECTS).index(name)]


def training_subject(subject: WorldSubject, settings: Settings) -> Subject:
    return Subject(token_for(subject.name), subject.class_word, list(subject.photos(settings.photos)))


def train_config(settings: Settings, **overrides: Any) -> TrainConfig:
    """svdiff's defaults, with the run's steps, seed and prompt templates; class images sampled as the model card
    recommends; `overrides` last (an ablation's change)."""
    values: dict[str, Any] = {"steps": settings.steps, "num_class_images": settings.num_class_images,
                              "class_image_steps": settings.sample_steps, "class_image_guidance": settings.guidance,
                              "seed": settings.seed, "checkpoint_every": 0,
                              "prompt_templates": settings.prompt_templates, "token_rows": settings.token_rows,
                              "lr_rows": settings.lr_rows, "mix_phrasings": settings.mix_phrasings}  # fmt: skip
    return TrainConfig(**(values | overrides))


def _tail(losses: list[float]) -> float | None:
    tail = losses[-50:]
    return sum(tail) / len(tail) if tail else None


def train_svdiff(pipe: Any, shifts: SpectralShiftModel, subjects: list[WorldSubject], settings: Settings,
                 prior_cache: BlobCache, budgets: Sequence[int] = (), on_budget: OnBudget | None = None,
                 **overrides: Any) -> Tuned:  # fmt: skip
    norm_ratio = TrainConfig.lr_norm / TrainConfig.lr  # the paper's 1e-6 : 1e-3
    data = [training_subject(s, settings) for s in subjects]
    state: TrainState | None = None
    seconds, tuned = 0.0, None
    for budget in budgets or (settings.steps,):
        config = train_config(settings, **({"lr": settings.svdiff_lr, "lr_norm": settings.svdiff_lr * norm_ratio}
                                           | overrides | {"steps": budget}))  # fmt: skip
        result = train(pipe, data, config, shifts=shifts, prior_cache=prior_cache, resume=state,
                       base_model_name=Path(BASE_MODEL_PATH).name)  # fmt: skip
        state, seconds, checkpoint = result.state, seconds + result.seconds, result.checkpoint
        tuned = Tuned("svdiff", pipe, shifts, checkpoint, seconds, len(serialize(checkpoint, dtype="float32")),
                      checkpoint.num_values(), _tail(result.losses), budget)  # fmt: skip
        if on_budget is not None:
            on_budget(tuned)
    assert tuned is not None
    return tuned


def train_baseline(method: str, subjects: list[WorldSubject], settings: Settings, prior_cache: BlobCache,
                   base: Path = BASE_MODEL_PATH, budgets: Sequence[int] = (), on_budget: OnBudget | None = None,
                   **overrides: Any) -> Tuned:  # fmt: skip
    """Full fine-tuning or LoRA on a freshly loaded base pipeline (the resident SVDiff pipeline stays untouched)."""
    pipe = load_pipeline(base)
    data = [training_subject(s, settings) for s in subjects]
    config = train_config(settings, **overrides)
    ladder = tuple(budgets or (settings.steps,))

    def tuned_at(result: FineTuneResult, budget: int) -> Tuned:
        return Tuned(method, pipe, None, None, result.seconds, result.checkpoint_bytes, result.trainable,
                     _tail(result.losses), budget)  # fmt: skip

    def report(result: FineTuneResult, budget: int) -> None:
        if on_budget is not None:
            on_budget(tuned_at(result, budget))

    if method == "full":
        result = full_fine_tune(pipe, data, config, settings.full_lr, prior_cache, ladder, report)
    elif method == "lora":
        result = lora_fine_tune(pipe, data, config, settings.lora_lr, settings.lora_rank, prior_cache, ladder, report)
    else:
        raise ValueError(f"unknown baseline {method!r}")
    return tuned_at(result, ladder[-1])


def sample(tuned: Tuned, prompt: str, n: int, seed: int, settings: Settings) -> list[Image.Image]:
    """n images; image i from seed `seed + i`, so every method starts from the same noise for the same prompt."""
    checkpoints = [(tuned.checkpoint, 1.0)] if tuned.checkpoint is not None else []
    images = generate(tuned.pipe, tuned.shifts, prompt, checkpoints=checkpoints, num_images=n, seed=seed,
                      steps=settings.sample_steps, guidance_scale=settings.guidance)
    return [generated.image for generated in images]
