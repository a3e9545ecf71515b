"""Learning-rate calibration on a validation subject that the benchmark never scores.

The recipes' learning rates were set for Stable Diffusion, not for the tiny base model, so each method gets the
same small search: its recipe rate times 1, 3 and 10, trained for the benchmark's steps on `CALIBRATION_SUBJECT`,
scored by subject fidelity on that subject's context prompts. Ties, common because the subject's held-out pattern
is rarely drawn whole, go to the larger share of the subject's attributes found one by one in those samples, then
to fidelity on its training prompt, then to the smaller rate. The chosen rates then train the scored subjects. No
scored subject, prompt or sample takes part.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from basemodel.reader import AttributeReader
from bench.quality.evaluate import evaluate_single
from bench.quality.methods import BENCH_SUBJECTS, Tuned
from bench.quality.settings import Settings

log = logging.getLogger(__name__)

CALIBRATION_SUBJECT = "blue-ringed-circle"
LR_FACTORS = (1.0, 3.0, 10.0)
CALIBRATED = ("svdiff", "full", "lora")
_SEED = 20_000  # sample seeds of their own, apart from the scored subjects'


@dataclass(frozen=True)
class Trial:
    lr: float
    fidelity: float  # subject fidelity on the calibration subject's context prompts
    training_prompt: float  # subject fidelity on its training prompt
    attributes: float  # mean share of context samples with its shape, with its colour, with its pattern
    final_loss: float | None
    seconds: float


@dataclass
class Calibration:
    subject: str = CALIBRATION_SUBJECT
    trials: dict[str, list[Trial]] = field(default_factory=dict)  # method -> one trial per rate

    def chosen(self, method: str) -> float:
        best = max(self.trials[method], key=lambda t: (t.fidelity, t.attributes, t.training_prompt, -t.lr))
        return best.lr


def recipe_lr(settings: Settings, method: str) -> float:
    return {"svdiff": settings.svdiff_lr, "full": settings.full_lr, "lora": settings.lora_lr}[method]


def with_lr(settings: Settings, method: str, lr: float) -> Settings:
    """The settings with one method's rate replaced (a positive, finite one)."""
    if not 0.0 < lr < math.inf:
        raise ValueError(f"a learning rate must be positive and finite, got {lr}")
    if method == "svdiff":
        return replace(settings, svdiff_lr=lr)
    if method == "full":
        return replace(settings, full_lr=lr)
    if method == "lora":
        return replace(settings, lora_lr=lr)
    raise ValueError(f"no learning rate to calibrate for {method!r}")


def calibrate(train: Callable[[str, str, Settings], Tuned], reader: AttributeReader, settings: Settings,
              methods: tuple[str, ...] = CALIBRATED) -> Calibration:
    """`train(method, subject_name, settings)` trains one method on one subject with those settings."""
    calibration, subject = Calibration(), BENCH_SUBJECTS[CALIBRATION_SUBJECT]
    for method in methods:
        calibration.trials[method] = []
        for factor in LR_FACTORS:
            lr = recipe_lr(settings, method) * factor
            tuned = train(method, CALIBRATION_SUBJECT, with_lr(settings, method, lr))
            scores = evaluate_single(tuned, subject, reader, settings, context_seed=_SEED, training_seed=_SEED - 1000)
            context = scores.context
            trial = Trial(lr, context.subject, scores.training_prompt, context.attributes, tuned.final_loss,
                          tuned.seconds)  # fmt: skip
            log.info("calibration %s lr %.1e: fidelity %.3f, attributes %.3f, training prompt %.3f", method, lr,
                     trial.fidelity, trial.attributes, trial.training_prompt)  # fmt: skip
            calibration.trials[method].append(trial)
            tuned.pipe = None
        log.info("calibration %s: chose lr %.1e", method, calibration.chosen(method))
    return calibration


def apply(settings: Settings, calibration: Calibration) -> Settings:
    for method in calibration.trials:
        settings = with_lr(settings, method, calibration.chosen(method))
    return settings
