"""The learning-rate calibration: which rate wins, how rates are substituted, and that scored subjects stay out."""

from __future__ import annotations

import pytest

from bench.quality.calibrate import CALIBRATION_SUBJECT, Calibration, Trial, apply, recipe_lr, with_lr
from bench.quality.run import main
from bench.quality.settings import FULL


def _trial(lr: float, fidelity: float, training_prompt: float = 0.0, attributes: float = 0.0) -> Trial:
    return Trial(lr=lr, fidelity=fidelity, training_prompt=training_prompt, attributes=attributes, final_loss=None,
                 seconds=1.0)  # fmt: skip


def test_the_calibration_subject_is_never_scored() -> None:
    assert CALIBRATION_SUBJECT not in FULL.subjects
    assert CALIBRATION_SUBJECT not in FULL.pair


def test_highest_fidelity_wins_then_attributes_then_training_prompt_then_smaller_rate() -> None:
    calibration = Calibration(trials={
        "a": [_trial(1e-3, 0.2, attributes=0.9), _trial(3e-3, 0.5), _trial(1e-2, 0.4)],
        "b": [_trial(1e-3, 0.5, 0.1), _trial(3e-3, 0.5, 0.3), _trial(1e-2, 0.5, 0.3)],
        "c": [_trial(1e-3, 0.0), _trial(3e-3, 0.0), _trial(1e-2, 0.0)],
        "d": [_trial(1e-3, 0.0, 0.5, 0.4), _trial(3e-3, 0.0, 0.0, 0.6), _trial(1e-2, 0.0, 0.9, 0.5)],
    })
    assert calibration.chosen("a") == 3e-3
    assert calibration.chosen("b") == 3e-3
    assert calibration.chosen("c") == 1e-3
    assert calibration.chosen("d") == 3e-3


def test_with_lr_replaces_one_rate() -> None:
    tripled = with_lr(FULL, "svdiff", 3 * FULL.svdiff_lr)
    assert tripled.svdiff_lr == pytest.approx(3e-3)
    assert (tripled.full_lr, tripled.lora_lr) == (FULL.full_lr, FULL.lora_lr)
    assert with_lr(FULL, "full", 1e-4).full_lr == 1e-4
    assert with_lr(FULL, "lora", 1e-3).lora_lr == 1e-3
    for method, rate in (("base", 1.0), ("full", 0.0), ("lora", -1e-4), ("svdiff", float("nan"))):
        with pytest.raises(ValueError):
            with_lr(FULL, method, rate)


def test_apply_sets_every_calibrated_method() -> None:
    methods = ("svdiff", "full", "lora")
    trials = {method: [_trial(recipe_lr(FULL, method) * f, f) for f in (1.0, 3.0, 10.0)] for method in methods}
    calibration = Calibration(trials=trials)
    tuned = apply(FULL, calibration)
    assert tuned.svdiff_lr == pytest.approx(10 * FULL.svdiff_lr)
    assert tuned.full_lr == pytest.approx(10 * FULL.full_lr)
    assert tuned.lora_lr == pytest.approx(10 * FULL.lora_lr)


@pytest.mark.parametrize(
    "given", ["base=1e-3", "svdiff=fast", "lora", "svdiff=0", "full=-1e-4", "lora=nan", "full=inf"]
)
def test_a_bad_lr_option_is_refused_before_anything_loads(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--lr", given])
    assert exited.value.code == 2
    assert "--lr" in capsys.readouterr().err
