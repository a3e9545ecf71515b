"""Training subjects: DreamBooth-style denoising with prior preservation, and Cut-Mix-Unmix for 2-3 subjects."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svdiff.attention import AttentionCapture
from svdiff.batches import SubjectPixels, subject_batch
from svdiff.checkpoint import Checkpoint
from svdiff.config import ShiftConfig
from svdiff.data import prepare_images
from svdiff.factorize import SVDCache, fingerprint
from svdiff.loop import Trainer
from svdiff.model import SpectralShiftModel, attach, pipeline_components
from svdiff.pipeline import is_sdxl, resolution
from svdiff.prior import BlobCache, class_images
from svdiff.sample import merged
from svdiff.state import Progress, ProgressCallback, TrainState, as_state
from svdiff.train_config import Subject, TrainConfig, TrainConfigError, validate_subjects

# The training API in one place: `from svdiff.train import train, TrainConfig, Subject, TrainState, Progress`.
__all__ = ["Progress", "Subject", "TrainConfig", "TrainConfigError", "TrainResult", "TrainState", "train"]


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    canceled: bool
    step: int  # the step reached (== config.steps unless canceled)
    losses: list[float]  # per step, including steps of resumed-from runs
    state: TrainState  # the final state: resume from it after a cancel
    seconds: float  # wall time of this call's steps
    class_images_generated: int  # 0 when the prior cache had them all


@contextlib.contextmanager
def clean_session(model: SpectralShiftModel) -> Iterator[SpectralShiftModel]:
    """The model unmerged with zero deltas and no token rows for the run; zero deltas, no token rows, no grads and
    its grad flags back after."""
    model.restore()
    model.zero_()
    model.drop_token_rows()
    flags = [p.requires_grad for p in model.parameters()]
    try:
        yield model
    finally:
        model.zero_()
        model.drop_token_rows()
        for param, flag in zip(model.parameters(), flags, strict=True):
            param.grad = None
            param.requires_grad_(flag)


@contextlib.contextmanager
def shift_model(pipe: Any, shifts: SpectralShiftModel | None, config: ShiftConfig,
                svd_cache: SVDCache | str | Path | None) -> Iterator[SpectralShiftModel]:
    """The caller's resident model, or one attached for this run only and detached afterwards."""
    if shifts is not None:
        yield shifts
        return
    model = attach(pipeline_components(pipe), config, cache=svd_cache)
    try:
        yield model
    finally:
        model.detach()


def prior_fingerprint(pipe: Any, model: SpectralShiftModel) -> str:
    """The fingerprint class images are cached under: the UNet and text encoder(s), whatever the shift config."""
    known = dict(model.stats.fingerprints)
    for name, module in pipeline_components(pipe).items():
        if name not in known:
            known[name] = fingerprint(module)
    return "-".join(known[name][:16] for name in sorted(known))


def prepare_subjects(pipe: Any, subjects: list[Subject], config: TrainConfig, base_fingerprint: str,
                     prior_cache: BlobCache | None) -> tuple[list[SubjectPixels], int]:
    """Photos at the model's resolution, and the class images of each class word (generated at most once)."""
    size = resolution(pipe)
    priors, generated = {}, 0
    if config.prior_preservation:
        for class_word in dict.fromkeys(s.class_word for s in subjects):
            images, made = class_images(pipe, class_word, config.num_class_images, base_fingerprint=base_fingerprint,
                                        cache=prior_cache, steps=config.class_image_steps,
                                        guidance_scale=config.class_image_guidance, prompt_template=config.class_prompt,
                                        seed=config.seed)
            priors[class_word] = prepare_images(images, size)
            generated += made
    data = [SubjectPixels(s.token, s.class_word, prepare_images(s.images, size), priors.get(s.class_word))
            for s in subjects]
    return data, generated


def identifier_ids(pipe: Any, subjects: list[Subject]) -> list[int]:
    """The token ids of every subject's identifier (one or more tokens each), in order, without repeats."""
    ids = [i for s in subjects for i in pipe.tokenizer(s.token, add_special_tokens=False).input_ids]
    return list(dict.fromkeys(ids))


def make_checkpoint(model: SpectralShiftModel, keys: list[str], base_model_name: str, subjects: list[Subject],
                    training: dict[str, Any]) -> Checkpoint:
    """The trained shifts only (untrained text-encoder shifts stay out of the file)."""
    checkpoint = Checkpoint.from_model(model, base_model_name, subjects=[s.describe() for s in subjects],
                                       training=training)
    checkpoint.shifts = {k: v for k, v in checkpoint.shifts.items() if k in keys}
    checkpoint.groups = {k: v for k, v in checkpoint.groups.items() if k in keys}
    return checkpoint


def train(pipe: Any, subjects: list[Subject], config: TrainConfig | None = None, *,
          shifts: SpectralShiftModel | None = None, prior_cache: BlobCache | None = None,
          callback: ProgressCallback | None = None, resume: TrainState | bytes | None = None,
          on_state: Callable[[TrainState], None] | None = None, base_model_name: str = "base",
          svd_cache: SVDCache | str | Path | None = None) -> TrainResult:
    """Train one set of shifts on 1 to 3 subjects; Cut-Mix-Unmix when there are several.

    `shifts` is the pipeline's resident SpectralShiftModel if it has one: it is trained from zero (or from
    `resume`) and handed back unmerged with zero deltas. Without one, shifts are attached for the run
    (config.shift_config, factors from `svd_cache`) and detached afterwards, leaving the pipeline as it was.
    `callback` gets a Progress after every step and stops the run by returning False; `on_state` gets a
    resumable TrainState every `checkpoint_every` steps.
    """
    config = config or TrainConfig()
    config.validate()
    validate_subjects(subjects)
    if is_sdxl(pipe):
        raise TrainConfigError("training supports SD 1.x/2.x pipelines; SDXL checkpoints cannot be trained here")
    state = as_state(resume)
    with shift_model(pipe, shifts, config.shift_config, svd_cache) as model, clean_session(model):
        with merged(model, None):  # class images come from the plain base weights
            data, generated = prepare_subjects(pipe, subjects, config, prior_fingerprint(pipe, model), prior_cache)
        if config.token_rows:
            model.add_token_rows(identifier_ids(pipe, subjects))
        unmix = config.cut_mix_unmix and len(subjects) > 1 and config.unmix_weight > 0
        capture = AttentionCapture(pipe.unet, min_downsample=config.unmix_min_downsample) if unmix else None
        trainer = Trainer(pipe, model, config, lambda generator: subject_batch(data, config, generator), capture)
        if state is not None:
            trainer.resume(state)
        with capture.installed() if capture is not None else contextlib.nullcontext():
            outcome = trainer.run(callback, on_state)
        training = {**config.to_dict(), "shift_config": model.config.to_dict(), "step": outcome.step,
                    "canceled": outcome.canceled, "final_loss": outcome.losses[-1] if outcome.losses else None}
        checkpoint = make_checkpoint(model, trainer.keys, base_model_name, subjects, training)
    return TrainResult(checkpoint, outcome.canceled, outcome.step, outcome.losses, outcome.state, outcome.seconds,
                       generated)
