"""The markdown report (bench/results/quality.md) and the final `quality:` line."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import asdict
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.quality.calibrate import LR_FACTORS
from bench.quality.methods import BENCH_SUBJECTS, LABELS, METHODS, token_for
from bench.quality.prompts import context_prompts, drift_prompt, pair_prompts
from bench.quality.scoring import SingleScores
from bench.quality.settings import Settings

if TYPE_CHECKING:
    from bench.quality.run import Results

FIDELITY_GOAL, PROMPT_GOAL, CMU_GAIN_GOAL = 0.7, 0.7, 0.20
NO_CMU, CMU = "joint, no Cut-Mix", "Cut-Mix-Unmix"


def mean_over_subjects(results: Results, method: str, metric: str) -> float:
    """`metric` is an attribute path of SingleResult, e.g. "context.subject"."""
    return statistics.fmean(attrgetter(metric)(per_method[method]) for per_method in results.single.values())


def headline(results: Results) -> dict[str, float]:
    return {
        "svdiff_fidelity": mean_over_subjects(results, "svdiff", "context.subject"),
        "svdiff_prompt": mean_over_subjects(results, "svdiff", "context.prompt"),
        "svdiff_drift": mean_over_subjects(results, "svdiff", "drift.subject"),
        "full_drift": mean_over_subjects(results, "full", "drift.subject"),
        "cmu_both": results.pairs[CMU].overall.both if CMU in results.pairs else float("nan"),
        "nocmu_both": results.pairs[NO_CMU].overall.both if NO_CMU in results.pairs else float("nan"),
    }


def quality_line(results: Results) -> str:
    h = headline(results)
    return (f"quality: svdiff_fidelity={h['svdiff_fidelity']:.3f} svdiff_drift={h['svdiff_drift']:.3f} "
            f"full_drift={h['full_drift']:.3f} cmu_both={h['cmu_both']:.3f} nocmu_both={h['nocmu_both']:.3f}")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _method_table(results: Results) -> list[str]:
    lines = ["| method | subject fidelity | prompt fidelity | drift: subject | drift: held-out attribute | "
             "checkpoint bytes (fp32) | trained values | train s (mean) | loss, last 50 steps | "
             "fidelity on the training prompt |", "| --- |" + " ---: |" * 9]
    for method in METHODS:
        tuned = [per[method] for per in results.tuned.values()]
        losses = [t.final_loss for t in tuned if t.final_loss is not None]
        lines.append(f"| {LABELS[method]} | {mean_over_subjects(results, method, 'context.subject'):.3f} | "
                     f"{mean_over_subjects(results, method, 'context.prompt'):.3f} | "
                     f"{mean_over_subjects(results, method, 'drift.subject'):.3f} | "
                     f"{mean_over_subjects(results, method, 'drift.held_out'):.3f} | "
                     f"{tuned[0].checkpoint_bytes:,} | {tuned[0].trainable:,} | "
                     f"{statistics.fmean(t.seconds for t in tuned):.1f} | "
                     f"{_fmt(statistics.fmean(losses) if losses else None, 4)} | "
                     f"{mean_over_subjects(results, method, 'training_prompt'):.3f} |")
    return lines


def _single_cells(c: SingleScores) -> str:
    values = (c.subject, c.prompt, c.shape, c.colour, c.pattern, c.background, c.position)
    return " | ".join(f"{v:.3f}" for v in values)


def _subject_table(results: Results) -> list[str]:
    lines = ["| subject | method | subject fidelity | prompt fidelity | shape | colour | pattern | background | "
             "position | drift: subject | drift: held-out | fidelity on the training prompt |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, per_method in results.single.items():
        for method, r in per_method.items():
            c, d = r.context, r.drift
            lines.append(f"| {name} | {method} | {_single_cells(c)} | {d.subject:.3f} | {d.held_out:.3f} | "
                         f"{r.training_prompt:.3f} |")
        for kind, c in results.ceilings.get(name, {}).items():
            lines.append(f"| {name} | ceiling: {kind} | {_single_cells(c)} | - | - | - |")
    return lines


def _pair_table(results: Results) -> list[str]:
    lines = ["| training | prompt | both subjects, intact, unmixed | two objects | left intact | right intact | "
             "attribute leak | train s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, result in results.pairs.items():
        seconds = results.pair_tuned[label].seconds
        for phrasing, s in [("all", result.overall), *result.per_prompt.items()]:
            lines.append(f"| {label} | {phrasing} | {s.both:.3f} | {s.two:.3f} | {s.left:.3f} | {s.right:.3f} | "
                         f"{s.leak:.3f} | {seconds:.1f} |")
    return lines


def _calibration(results: Results) -> list[str]:
    calibration = results.calibration
    if calibration is None:
        return ["Not calibrated: every method trained with the rate in the settings below (`--no-calibrate` or "
                "`--lr`)."]
    lines = [f"Each method's recipe rate times {', '.join(f'{f:g}' for f in LR_FACTORS)}, trained on "
             f"`{calibration.subject}` (never scored below), chosen by subject fidelity on its context prompts "
             "(ties: the mean share of its shape, colour and pattern found one by one there, then the training "
             "prompt, then the smaller rate):", "",
             "| method | lr | subject fidelity | attributes one by one | fidelity on the training prompt | "
             "loss, last 50 steps | train s | chosen |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for method, trials in calibration.trials.items():
        chosen = calibration.chosen(method)
        lines += [f"| {LABELS[method]} | {t.lr:.1e} | {t.fidelity:.3f} | {t.attributes:.3f} | "
                  f"{t.training_prompt:.3f} | {_fmt(t.final_loss, 4)} | {t.seconds:.1f} | "
                  f"{'yes' if t.lr == chosen else ''} |" for t in trials]
    return lines


def _goals(results: Results) -> list[str]:
    h = headline(results)
    gain = h["cmu_both"] - h["nocmu_both"]
    checks = [
        (f"SVDiff subject fidelity >= {FIDELITY_GOAL} and prompt fidelity >= {PROMPT_GOAL}",
         f"{h['svdiff_fidelity']:.3f} and {h['svdiff_prompt']:.3f}",
         h["svdiff_fidelity"] >= FIDELITY_GOAL and h["svdiff_prompt"] >= PROMPT_GOAL),
        ("SVDiff drift lower than full fine-tuning's", f"{h['svdiff_drift']:.3f} vs {h['full_drift']:.3f}",
         h["svdiff_drift"] < h["full_drift"]),
        (f"Cut-Mix-Unmix raises the both-subjects rate by >= {CMU_GAIN_GOAL * 100:.0f} points",
         f"{h['cmu_both']:.3f} - {h['nocmu_both']:.3f} = {gain:+.3f}", gain >= CMU_GAIN_GOAL),
    ]
    lines = ["| goal (the paper's claims) | measured | met |", "| --- | --- | --- |"]
    return lines + [f"| {goal} | {value} | {'yes' if met else 'no'} |" for goal, value, met in checks]


def _prompts(settings: Settings) -> list[str]:
    lines = []
    for name in settings.subjects:
        subject = BENCH_SUBJECTS[name]
        texts = [p.text for p in context_prompts(subject, token_for(name), settings.photos)]
        lines.append(f"- `{name}` (token `{token_for(name)}`, class `{subject.class_word}`): "
                     + "; ".join(f'"{t}"' for t in texts) + f'; drift: "{drift_prompt(subject)}"')
    if not settings.pair:
        return lines
    first, second = (BENCH_SUBJECTS[n] for n in settings.pair)
    for prompt in pair_prompts((first, token_for(first.name)), (second, token_for(second.name))):
        lines.append(f'- pair ({prompt.phrasing}): "{prompt.text}"')
    return lines


def write_report(path: Path, settings: Settings, results: Results, wall: float, threads: int) -> str:
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"with {threads} thread(s), {platform.python_version()}")
    text = "\n".join([
        "# Quality: SVDiff against full fine-tuning and LoRA (`make bench-quality`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}; wall time {wall / 60:.1f} min"
        f"{' (quick smoke run: numbers mean nothing)' if settings.quick else ''}.",
        "",
        "Rates are shares of samples in which the attribute reader finds what is asked (basemodel/reader.py).",
        "Subject fidelity: the subject's shape, colour and pattern; prompt fidelity: those and the prompted",
        "background and position; drift: samples of the bare class prompt that show the subject (all three",
        "attributes) or any of its held-out attributes. Ceilings: the same scores for perfect samples (renders of",
        "what each context prompt asks for), read directly and after an autoencoder round trip. Means over the",
        "subjects:",
        "",
        *_method_table(results),
        "",
        "The base model's own prompt following (basemodel.evaluate: random base-world captions, share of samples",
        "in which the reader finds each prompted attribute), what any personalization builds on:",
        "",
        "| " + " | ".join(results.base_following) + " |",
        "| " + " | ".join("---:" for _ in results.base_following) + " |",
        "| " + " | ".join(f"{v:.3f}" for v in results.base_following.values()) + " |",
        "",
        "## Learning-rate calibration",
        "",
        *_calibration(results),
        "",
        "## Goals",
        "",
        *_goals(results),
        "",
        "## Per subject",
        "",
        *_subject_table(results),
        "",
        "## Two subjects trained together (SVDiff)",
        "",
        *_pair_table(results),
        "",
        "## Settings",
        "",
        f"`{asdict(settings)}`",
        "",
        "Learning rates and their reasons: `bench/quality/settings.py`. Prompts:",
        "",
        *_prompts(settings),
        "",
        "Grids: `context_<subject>.png` (training photos, then each method on the first context prompt),",
        "`drift_<subject>.png` (the bare class prompt), `pair.png` (the side-by-side prompts).",
        "",
    ])
    path.write_text(text)
    return text
