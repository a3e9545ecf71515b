"""The calibration rule: which (rate, steps) wins, when the grid widens, and that scored subjects stay out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from bench.quality import calibrate as calibration_module
from bench.quality.calibrate import Calibration, Trial, calibrate, chosen, recipe_lr, step_budgets, with_lr
from bench.quality.methods import Tuned
from bench.quality.rates import Rate
from bench.quality.run import main
from bench.quality.settings import FULL


def _trial(lr: float, steps: int, fidelity: int, prompt: int = 0, drift: int = 0) -> Trial:
    return Trial(lr, steps, Rate(fidelity, 10), Rate(prompt, 10), Rate(drift, 10), Rate(0, 10), None, 1.0)


def test_the_calibration_subject_is_of_the_scored_kind_and_never_scored() -> None:
    from basemodel.subjects import SUBJECTS

    assert FULL.calibration_subject not in (*FULL.subjects, *FULL.pair, *FULL.stress_subjects)
    assert SUBJECTS[FULL.calibration_subject].kind == "instance"
    assert {SUBJECTS[name].kind for name in FULL.subjects} == {"instance"}


def test_score_is_fidelity_plus_prompt_less_drift_and_ties_go_to_fewer_steps_then_smaller_rates() -> None:
    calibration = Calibration("x", trials={
        "a": [_trial(1e-3, 100, 5), _trial(1e-3, 200, 5, prompt=2), _trial(3e-3, 100, 6, drift=4)],
        "b": [_trial(1e-3, 200, 5), _trial(3e-3, 100, 5), _trial(1e-3, 100, 5)],
    })  # fmt: skip
    assert calibration.best("a").score == pytest.approx(0.7)
    assert (calibration.best("a").lr, calibration.best("a").steps) == (1e-3, 200)
    assert (calibration.best("b").lr, calibration.best("b").steps) == (1e-3, 100)


def _fake_train(scores: dict[tuple[float, int], int], runs: list[tuple[float, tuple[int, ...]]]):  # type: ignore[no-untyped-def]
    def train(method: str, name: str, settings, budgets: Sequence[int], on_budget) -> Tuned:  # type: ignore[no-untyped-def]
        lr = recipe_lr(settings, method)
        runs.append((lr, tuple(budgets)))
        tuned = Tuned(method, None)
        for budget in budgets:
            tuned = Tuned(method, None, steps=budget)
            tuned.fidelity = scores.get((round(lr, 12), budget), 0)  # type: ignore[attr-defined]
            on_budget(tuned)
        return tuned

    return train


def test_a_winner_on_an_edge_widens_the_grid_once(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replace(FULL, svdiff_lr=1e-3, steps=100)
    high = round(3e-3, 12)
    scores = {(high, 200): 8, (round(9e-3, 12), 200): 9, (round(9e-3, 12), 400): 3}

    def fake_evaluate(tuned, subject, reader, settings, sampling):  # type: ignore[no-untyped-def]
        rate = Rate(tuned.fidelity, 10)
        context = type("C", (), {"subject": rate, "prompt": Rate(0, 10)})()
        return type("R", (), {"context": context, "drift": Rate(0, 10), "training_prompt": Rate(0, 10)})()

    monkeypatch.setattr(calibration_module, "evaluate_single", fake_evaluate)
    runs: list[tuple[float, tuple[int, ...]]] = []
    calibration = calibrate(_fake_train(scores, runs), None, settings, methods=("svdiff",))  # type: ignore[arg-type]
    assert [budgets for _, budgets in runs[:3]] == [tuple(step_budgets(settings))] * 3
    assert runs[3][0] == pytest.approx(9e-3)  # the highest rate won: one more rate, three times it
    assert runs[4] == (pytest.approx(9e-3), (400,))  # it won at the most steps: twice that, at its rate
    assert len(runs) == 5
    best = calibration.best("svdiff")
    assert (best.lr, best.steps) == (pytest.approx(9e-3), 200)
    assert calibration.edges("svdiff") == ["highest rate"]  # widened once; the report says it is still an edge
    tuned = chosen(settings, calibration, "svdiff")
    assert (tuned.svdiff_lr, tuned.steps) == (pytest.approx(9e-3), 200)


def test_with_lr_replaces_one_rate() -> None:
    tripled = with_lr(FULL, "svdiff", 3 * FULL.svdiff_lr)
    assert tripled.svdiff_lr == pytest.approx(3 * FULL.svdiff_lr)
    assert (tripled.full_lr, tripled.lora_lr) == (FULL.full_lr, FULL.lora_lr)
    for method, rate in (("base", 1.0), ("full", 0.0), ("lora", -1e-4), ("svdiff", float("nan"))):
        with pytest.raises(ValueError):
            with_lr(FULL, method, rate)


@pytest.mark.parametrize(
    "given", ["base=1e-3", "svdiff=fast", "lora", "svdiff=0", "full=-1e-4", "lora=nan", "full=inf"]
)
def test_a_bad_lr_option_is_refused_before_anything_loads(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--lr", given])
    assert exited.value.code == 2
    assert "--lr" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--subjects", "no-such-subject"]])
def test_bad_options_are_refused_before_anything_loads(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
