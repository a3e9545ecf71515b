"""Learning-rate calibration on a validation subject that the benchmark never scores.

The recipes' learning rates were set for Stable Diffusion, not for the tiny base model, so each method gets the
same small search: its recipe rate times 1, 3 and 10, trained for the benchmark's steps on `CALIBRATION_SUBJECT`,
scored by subject fidelity on that subject's context prompts (ties: fidelity on its training prompt, then the
smaller rate). The chosen rates then train the scored subjects. No scored subject, prompt or sample takes part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from basemodel.reader import AttributeReader
from bench.quality.methods import BENCH_SUBJECTS, Tuned, sample, token_for
from bench.quality.prompts import context_prompts
from bench.quality.scoring import read_single, score_context, shows
from bench.quality.settings import Settings
from svdiff.cutmix import SUBJECT_PROMPT

log = logging.getLogger(__name__)

CALIBRATION_SUBJECT = "blue-ringed-circle"
LR_FACTORS = (1.0, 3.0, 10.0)
CALIBRATED = ("svdiff", "full", "lora")
_SEED = 20_000
_STRIDE = 100


@dataclass(frozen=True)
class Trial:
    lr: float
    fidelity: float  # subject fidelity on the calibration subject's context prompts
    training_prompt: float  # subject fidelity on its training prompt
    final_loss: float | None
    seconds: float


@dataclass
class Calibration:
    subject: str = CALIBRATION_SUBJECT
    trials: dict[str, list[Trial]] = field(default_factory=dict)  # method -> one trial per rate

    def chosen(self, method: str) -> float:
        best = max(self.trials[method], key=lambda t: (t.fidelity, t.training_prompt, -t.lr))
        return best.lr


def recipe_lr(settings: Settings, method: str) -> float:
    return {"svdiff": settings.svdiff_lr, "full": settings.full_lr, "lora": settings.lora_lr}[method]


def with_lr(settings: Settings, method: str, lr: float) -> Settings:
    """The settings with one method's rate replaced; SVDiff's norm-shift rate keeps its ratio to the matrix rate."""
    if method == "svdiff":
        return replace(settings, svdiff_lr=lr, svdiff_lr_norm=settings.svdiff_lr_norm * lr / settings.svdiff_lr)
    if method == "full":
        return replace(settings, full_lr=lr)
    if method == "lora":
        return replace(settings, lora_lr=lr)
    raise ValueError(f"no learning rate to calibrate for {method!r}")


def score_trial(tuned: Tuned, reader: AttributeReader, settings: Settings) -> tuple[float, float]:
    subject = BENCH_SUBJECTS[CALIBRATION_SUBJECT]
    token = token_for(subject.name)
    images, backgrounds, positions = [], [], []
    for i, prompt in enumerate(context_prompts(subject, token, settings.photos)):
        batch = sample(tuned, prompt.text, settings.context_samples, _SEED + _STRIDE * i, settings)
        images += batch
        backgrounds += [prompt.background] * len(batch)
        positions += [prompt.position] * len(batch)
    context = score_context(reader, images, subject, backgrounds, positions)
    own = sample(tuned, SUBJECT_PROMPT.format(token=token, class_word=subject.class_word), settings.drift_samples,
                 _SEED - 1000, settings)
    learnt = float(np.mean([shows(o, subject) for o in read_single(reader, own)]))
    return context.subject, learnt


def calibrate(train: Callable[[str, str, Settings], Tuned], reader: AttributeReader, settings: Settings,
              methods: tuple[str, ...] = CALIBRATED) -> Calibration:
    """`train(method, subject_name, settings)` trains one method on one subject with those settings."""
    calibration = Calibration()
    for method in methods:
        calibration.trials[method] = []
        for factor in LR_FACTORS:
            lr = recipe_lr(settings, method) * factor
            tuned = train(method, CALIBRATION_SUBJECT, with_lr(settings, method, lr))
            fidelity, learnt = score_trial(tuned, reader, settings)
            trial = Trial(lr, fidelity, learnt, tuned.final_loss, tuned.seconds)
            log.info("calibration %s lr %.1e: fidelity %.3f, training prompt %.3f", method, lr, fidelity, learnt)
            calibration.trials[method].append(trial)
            tuned.pipe = None
        log.info("calibration %s: chose lr %.1e", method, calibration.chosen(method))
    return calibration


def apply(settings: Settings, calibration: Calibration) -> Settings:
    for method in calibration.trials:
        settings = with_lr(settings, method, calibration.chosen(method))
    return settings
