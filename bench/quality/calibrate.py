"""Rate and step-budget calibration on a subject of the scored kind that the benchmark never scores.

The rule, fixed before any scored run: each method trains at its centre rate (bench/quality/settings.py) times
1/3, 1 and 3, each run sampled at 1/2, 1 and 2 times the settings' step budget (one run per rate, paused at each
budget); a trial's score is subject fidelity plus prompt fidelity less drift, all on the calibration subject
(its context prompts and its bare class prompt, seeds of their own). The best score wins; ties go to fewer steps,
then to the smaller rate. A winner on an edge of the grid widens it once on that side (one more rate, a third or
three times the edge; or a budget of half the smallest or twice the largest, at the winning rate) and the rule is
applied again; the report says if the final choice still sits on an edge. No scored subject, prompt or sample
takes part.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from basemodel.reader import AttributeReader
from basemodel.subjects import SUBJECTS
from bench.quality.evaluate import Sampling, evaluate_single
from bench.quality.methods import OnBudget, Tuned
from bench.quality.rates import Rate
from bench.quality.settings import Settings

log = logging.getLogger(__name__)

LR_FACTORS = (1 / 3, 1.0, 3.0)
STEP_FACTORS = (0.5, 1.0, 2.0)
WIDEN = 3.0  # a rate beyond an edge: a third or three times it
CALIBRATED = ("svdiff", "full", "lora")
_SEED = 20_000  # sample seeds of their own, apart from the scored subjects'

# train(method, subject name, settings, step budgets, on_budget) trains one run, calling on_budget at each budget.
Train = Callable[[str, str, Settings, Sequence[int], OnBudget], Tuned]


@dataclass(frozen=True)
class Trial:
    lr: float
    steps: int
    fidelity: Rate  # subject fidelity on the calibration subject's context prompts
    prompt: Rate  # prompt fidelity there
    drift: Rate  # its bare class prompt showing its combination
    training_prompt: Rate
    final_loss: float | None
    seconds: float

    @property
    def score(self) -> float:
        return self.fidelity.value + self.prompt.value - self.drift.value


@dataclass
class Calibration:
    subject: str
    trials: dict[str, list[Trial]] = field(default_factory=dict)  # method -> one trial per (rate, budget)

    def best(self, method: str) -> Trial:
        return max(self.trials[method], key=lambda t: (round(t.score, 9), -t.steps, -t.lr))

    def edges(self, method: str) -> list[str]:
        """Which edges of the tried grid the winner sits on ("lowest rate", "most steps", ...)."""
        best, trials = self.best(method), self.trials[method]
        rates, steps = sorted({t.lr for t in trials}), sorted({t.steps for t in trials if t.lr == self.best(method).lr})
        named = [("lowest rate", best.lr == rates[0]), ("highest rate", best.lr == rates[-1]),
                 ("fewest steps", best.steps == steps[0]), ("most steps", best.steps == steps[-1])]  # fmt: skip
        return [name for name, on in named if on]


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


def step_budgets(settings: Settings) -> list[int]:
    return [max(1, round(settings.steps * factor)) for factor in STEP_FACTORS]


class _Runner:
    def __init__(self, train: Train, reader: AttributeReader, settings: Settings, calibration: Calibration) -> None:
        self.train_fn, self.reader, self.settings, self.calibration = train, reader, settings, calibration
        self.sampling = Sampling(settings.calibration_samples, settings.drift_samples // 2 or 1, context_seed=_SEED,
                                 drift_seed=_SEED + 500, training_seed=_SEED - 1000)  # fmt: skip

    def ladder(self, method: str, lr: float, budgets: Sequence[int]) -> None:
        subject = SUBJECTS[self.calibration.subject]

        def on_budget(tuned: Tuned) -> None:
            scores = evaluate_single(tuned, subject, self.reader, self.settings, self.sampling)
            trial = Trial(lr, tuned.steps, scores.context.subject, scores.context.prompt, scores.drift,
                          scores.training_prompt, tuned.final_loss, tuned.seconds)  # fmt: skip
            log.info("calibration %s lr %.1e steps %d: fidelity %s prompt %s drift %s -> score %.3f", method, lr,
                     trial.steps, trial.fidelity, trial.prompt, trial.drift, trial.score)  # fmt: skip
            self.calibration.trials[method].append(trial)

        tuned = self.train_fn(method, subject.name, with_lr(self.settings, method, lr), budgets, on_budget)
        tuned.pipe = None


def calibrate(train: Train, reader: AttributeReader, settings: Settings,
              methods: tuple[str, ...] = CALIBRATED) -> Calibration:  # fmt: skip
    calibration = Calibration(settings.calibration_subject)
    runner = _Runner(train, reader, settings, calibration)
    budgets = step_budgets(settings)
    for method in methods:
        calibration.trials[method] = []
        centre = recipe_lr(settings, method)
        for factor in LR_FACTORS:
            runner.ladder(method, centre * factor, budgets)
        edges = calibration.edges(method)
        if "lowest rate" in edges or "highest rate" in edges:
            edge = calibration.best(method).lr
            runner.ladder(method, edge / WIDEN if "lowest rate" in edges else edge * WIDEN, budgets)
            edges = calibration.edges(method)
        best = calibration.best(method)
        if "fewest steps" in edges and min(budgets) > 1:
            runner.ladder(method, best.lr, [max(1, min(budgets) // 2)])
        elif "most steps" in edges:
            runner.ladder(method, best.lr, [2 * max(budgets)])
        best = calibration.best(method)
        log.info("calibration %s: chose lr %.1e, %d steps (score %.3f%s)", method, best.lr, best.steps, best.score,
                 f"; on the grid's edge: {', '.join(calibration.edges(method))}" if calibration.edges(method) else "")
    return calibration


def chosen(settings: Settings, calibration: Calibration, method: str) -> Settings:
    """The settings with `method`'s calibrated rate and step budget."""
    best = calibration.best(method)
    return replace(with_lr(settings, method, best.lr), steps=best.steps)
