"""The markdown report (bench/results/quality.md) and the final `quality:` line."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from basemodel.subjects import SUBJECTS
from bench.quality.calibrate import LR_FACTORS, STEP_FACTORS
from bench.quality.evaluate import SingleResult
from bench.quality.methods import LABELS, METHODS, token_for
from bench.quality.prompts import context_prompts, drift_prompt, pair_prompts
from bench.quality.rates import Rate, separated
from bench.quality.results import CMU, NO_CMU, Results
from bench.quality.scoring import SingleScores
from bench.quality.settings import Settings

FIDELITY_GOAL, FIDELITY_SHARE_GOAL, PROMPT_GOAL, CMU_GAIN_GOAL = 0.7, 0.9, 0.6, 0.20
Metric = Callable[[SingleResult], Rate]


def subject_fidelity(r: SingleResult) -> Rate:
    return r.context.subject


def prompt_fidelity(r: SingleResult) -> Rate:
    return r.context.prompt


def drift_rate(r: SingleResult) -> Rate:
    return r.drift


def training_prompt_fidelity(r: SingleResult) -> Rate:
    return r.training_prompt


def pooled(per_subject: dict[str, dict[str, SingleResult]], method: str, metric: Metric) -> Rate:
    """One rate over every subject's samples (subject -> method -> result)."""
    return Rate.pooled(metric(per_method[method]) for per_method in per_subject.values() if method in per_method)


ROW_METRICS: tuple[Metric, ...] = (subject_fidelity, prompt_fidelity, drift_rate, training_prompt_fidelity)


def _row(per_subject: dict[str, dict[str, SingleResult]], method: str) -> str:
    """The pooled rates of ROW_METRICS as table cells."""
    return " | ".join(str(pooled(per_subject, method, metric)) for metric in ROW_METRICS)


def _nan() -> Rate:
    return Rate(0, 0)


def headline(results: Results) -> dict[str, float]:
    fidelity = pooled(results.single, "svdiff", subject_fidelity)
    pair = results.pairs
    return {
        "svdiff_fidelity": fidelity.value,
        "svdiff_fidelity_lo": fidelity.lo,
        "full_fidelity": pooled(results.single, "full", subject_fidelity).value,
        "svdiff_prompt": pooled(results.single, "svdiff", prompt_fidelity).value,
        "svdiff_drift_hi": pooled(results.single, "svdiff", drift_rate).hi,
        "full_drift_lo": pooled(results.single, "full", drift_rate).lo,
        "cmu_both": (pair[CMU].overall.both if CMU in pair else _nan()).value,
        "nocmu_both": (pair[NO_CMU].overall.both if NO_CMU in pair else _nan()).value,
        "stress_svdiff": pooled(results.stress, "svdiff", subject_fidelity).value,
        "stress_full": pooled(results.stress, "full", subject_fidelity).value,
    }


def quality_line(results: Results) -> str:
    return "quality: " + " ".join(f"{name}={value:.3f}" for name, value in headline(results).items())


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _method_table(results: Results) -> list[str]:
    lines = ["| method | subject fidelity [95%] | prompt fidelity [95%] | drift [95%] | on the training prompt | "
             "checkpoint bytes (fp32) | trained values | steps | lr | train s (mean) | loss, last 50 steps |",
             "| --- |" + " ---: |" * 10]  # fmt: skip
    for method in METHODS:
        runs = [per[method] for per in results.single.values()]
        if not runs:  # a run of other parts only (--parts)
            continue
        losses = [r.final_loss for r in runs if r.final_loss is not None]
        settings = results.method_settings.get(method)
        lr = {"svdiff": "svdiff_lr", "full": "full_lr", "lora": "lora_lr"}.get(method)
        lines.append(
            f"| {LABELS[method]} | {_row(results.single, method)} | "
            f"{runs[0].checkpoint_bytes:,} | {runs[0].trainable:,} | {runs[0].steps} | "
            f"{f'{getattr(settings, lr):.1e}' if settings and lr else '-'} | "
            f"{sum(r.seconds for r in runs) / len(runs):.1f} | "
            f"{_fmt(sum(losses) / len(losses) if losses else None, 4)} |")
    return lines


def _cells(c: SingleScores) -> str:
    return " | ".join(str(rate) for rate in (c.subject, c.prompt, c.combination, c.details, c.background, c.position))


_SUBJECT_HEADER = ["| subject | method | subject fidelity | prompt fidelity | shape, colour and pattern | details | "
                   "background | position | drift | on the training prompt |",
                   "| --- | --- |" + " ---: |" * 8]  # fmt: skip


def _subject_rows(per_subject: dict[str, dict[str, SingleResult]], results: Results | None = None) -> list[str]:
    lines = []
    for name, per_method in per_subject.items():
        for method, r in per_method.items():
            lines.append(f"| {name} | {method} | {_cells(r.context)} | {r.drift} | {r.training_prompt} |")
        for kind, c in (results.ceilings.get(name, {}) if results else {}).items():
            lines.append(f"| {name} | ceiling: {kind} | {_cells(c)} | - | - |")
    return lines


def _calibration(results: Results) -> list[str]:
    calibration = results.calibration
    if calibration is None:
        return ["Not calibrated: every method trained with the rate and steps in the settings below "
                "(`--no-calibrate` or `--lr`)."]  # fmt: skip
    lines = [f"Each method's centre rate times {', '.join(f'{f:.3g}' for f in LR_FACTORS)}, each run sampled at "
             f"{', '.join(f'{f:g}' for f in STEP_FACTORS)} times {results.method_settings and 'the base budget'} "
             f"(widened once past an edge), trained on `{calibration.subject}` (never scored); score = subject "
             "fidelity + prompt fidelity - drift there; ties to fewer steps, then the smaller rate "
             "(`bench/quality/calibrate.py`).", "",
             "| method | lr | steps | subject fidelity | prompt fidelity | drift | on the training prompt | score | "
             "loss, last 50 steps | train s | chosen |", "| --- |" + " ---: |" * 9 + " --- |"]  # fmt: skip
    for method, trials in calibration.trials.items():
        best = calibration.best(method)
        for t in sorted(trials, key=lambda t: (t.lr, t.steps)):
            mark = "yes" if t == best else ""
            if t == best and calibration.edges(method):
                mark += f" (edge: {', '.join(calibration.edges(method))})"
            lines.append(f"| {LABELS[method]} | {t.lr:.1e} | {t.steps} | {t.fidelity} | {t.prompt} | {t.drift} | "
                         f"{t.training_prompt} | {t.score:.3f} | {_fmt(t.final_loss, 4)} | {t.seconds:.1f} | "
                         f"{mark} |")  # fmt: skip
    return lines


def _goals(results: Results) -> list[str]:
    fid, full = pooled(results.single, "svdiff", subject_fidelity), pooled(results.single, "full", subject_fidelity)
    prompt = pooled(results.single, "svdiff", prompt_fidelity)
    drift, full_drift = pooled(results.single, "svdiff", drift_rate), pooled(results.single, "full", drift_rate)
    cmu = results.pairs[CMU].overall.both if CMU in results.pairs else _nan()
    nocmu = results.pairs[NO_CMU].overall.both if NO_CMU in results.pairs else _nan()
    gain = cmu.value - nocmu.value
    checks = [
        (f"SVDiff subject fidelity >= {FIDELITY_GOAL}", str(fid), fid.value >= FIDELITY_GOAL),
        (f"SVDiff subject fidelity >= {FIDELITY_SHARE_GOAL} x full fine-tuning's", f"{fid.value:.3f} vs "
         f"{FIDELITY_SHARE_GOAL} x {full.value:.3f}", fid.value >= FIDELITY_SHARE_GOAL * full.value),
        (f"SVDiff prompt fidelity >= {PROMPT_GOAL}", str(prompt), prompt.value >= PROMPT_GOAL),
        ("SVDiff drift's upper bound below full fine-tuning's lower bound", f"{drift} vs {full_drift}",
         separated(drift, full_drift)),
        (f"Cut-Mix-Unmix raises both-subjects-intact by >= {CMU_GAIN_GOAL * 100:.0f} points",
         f"{cmu} - {nocmu} = {gain:+.3f}", gain >= CMU_GAIN_GOAL),
    ]  # fmt: skip
    lines = ["| goal | measured [95%] | met |", "| --- | --- | --- |"]
    return lines + [f"| {goal} | {value} | {'yes' if met else 'no'} |" for goal, value, met in checks]


def _ablations(results: Results) -> list[str]:
    lines = ["| SVDiff recipe | subject fidelity | prompt fidelity | drift | on the training prompt | train s (mean) |",
             "| --- |" + " ---: |" * 5]  # fmt: skip
    rows = {"the recipe (headline row)": {n: per["svdiff"] for n, per in results.single.items()}}
    for label, per_subject in (rows | results.ablations).items():
        wrapped = {name: {"svdiff": r} for name, r in per_subject.items()}
        seconds = [r.seconds for r in per_subject.values()]
        lines.append(f"| {label} | {_row(wrapped, 'svdiff')} | {sum(seconds) / max(1, len(seconds)):.1f} |")
    return lines


def _pair_table(results: Results) -> list[str]:
    lines = ["| training | prompt | both subjects, intact, unmixed | two objects | left intact | right intact | "
             "attribute leak | steps | train s |", "| --- | --- |" + " ---: |" * 7]  # fmt: skip
    for label, result in results.pairs.items():
        for phrasing, s in [("all", result.overall), *result.per_prompt.items()]:
            lines.append(f"| {label} | {phrasing} | {s.both} | {s.two} | {s.left} | {s.right} | {s.leak} | "
                         f"{result.steps} | {result.seconds:.1f} |")  # fmt: skip
    return lines


def _prompts(settings: Settings) -> list[str]:
    lines = []
    for name in (*settings.subjects, *settings.stress_subjects, settings.calibration_subject):
        subject = SUBJECTS[name]
        texts = [p.text for p in context_prompts(subject, token_for(name), settings.photos)]
        lines.append(f"- `{name}` ({subject.kind}; details {subject.details}; token `{token_for(name)}`, class "
                     f"`{subject.class_word}`): " + "; ".join(f'"{t}"' for t in texts)
                     + f'; drift: "{drift_prompt(subject)}"')  # fmt: skip
    first, second = (SUBJECTS[n] for n in settings.pair)
    for prompt in pair_prompts((first, token_for(first.name)), (second, token_for(second.name))):
        lines.append(f'- pair ({prompt.phrasing}): "{prompt.text}"')
    return lines


def _base_following(results: Results) -> list[str]:
    following = results.base_following
    return ["| " + " | ".join(following) + " |", "| " + " | ".join("---:" for _ in following) + " |",
            "| " + " | ".join(f"{v:.3f}" for v in following.values()) + " |"]  # fmt: skip


def write_report(path: Path, settings: Settings, results: Results, wall: float, threads: int) -> str:
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"with {threads} thread(s), {platform.python_version()}")
    text = "\n".join([
        "# Quality: SVDiff against full fine-tuning and LoRA (`make bench-quality`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; wall time {wall / 60:.1f} min"
        f"{' (quick smoke run: numbers mean nothing)' if settings.quick else ''}.",
        "",
        "Rates are shares of samples in which the attribute reader finds what is asked (basemodel/reader.py), with",
        "95% Wilson intervals in brackets, pooled over the scored subjects' samples. Subject fidelity: the whole",
        "instance (shape, colour, pattern, tone, outline, and the marks of a patterned subject) in new contexts;",
        "prompt fidelity: that and the prompted background and position; drift: samples of the bare class prompt",
        "that show the subject's shape, colour and pattern together (a combination base training never drew).",
        "",
        *_method_table(results),
        "",
        "The base model's own prompt following (basemodel.evaluate on random base-world captions):",
        "",
        *_base_following(results),
        "",
        "## Goals",
        "",
        *_goals(results),
        "",
        "## Calibration (rate and step budget)",
        "",
        *_calibration(results),
        "",
        "## Recipe ablations (SVDiff, scored subjects, calibrated rate and steps)",
        "",
        *_ablations(results),
        "",
        "## Per subject",
        "",
        *_SUBJECT_HEADER,
        *_subject_rows(results.single, results),
        "",
        "## Stress row: a shape or pattern the base has never drawn",
        "",
        *_SUBJECT_HEADER,
        *_subject_rows(results.stress),
        "",
        "## Two subjects trained together (SVDiff)",
        "",
        *_pair_table(results),
        "",
        "## Settings",
        "",
        f"`{asdict(settings)}`",
        "",
        "Rate and steps per method (calibrated here, or fixed from an earlier calibration with `--fixed`): "
        + "; ".join(f"{m}: lr {getattr(s, m + '_lr'):.1e}, {s.steps} steps"
                    + ("" if results.calibration and m in results.calibration.trials else " (fixed)")
                    for m, s in results.method_settings.items()) + ".",
        "",
        "Prompts:",
        "",
        *_prompts(settings),
        "",
        "Grids: `context_<subject>.png` (training photos, then each method on the first context prompt),",
        "`drift_<subject>.png` (the bare class prompt), `pair.png` (the side-by-side prompts).",
        "",
    ])  # fmt: skip
    path.write_text(text)
    return text
