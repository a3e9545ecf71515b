"""Orchestration: calibrate, train every method on every subject, evaluate, write the report and grids, print the
line."""

from __future__ import annotations

import argparse
import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from basemodel import BASE_MODEL_PATH, READER_PATH
from basemodel.evaluate import prompt_following
from basemodel.reader import AttributeReader, load_reader
from basemodel.subjects import SUBJECTS
from bench.quality.calibrate import CALIBRATED, calibrate, chosen, with_lr
from bench.quality.evaluate import SingleResult, ceilings, evaluate_pair, evaluate_single
from bench.quality.grids import save_grid
from bench.quality.methods import LABELS, METHODS, OnBudget, Tuned, train_baseline, train_svdiff
from bench.quality.report import quality_line, write_report
from bench.quality.results import CMU, CMU_CENTRE, CMU_ONE_PHRASING, NO_CMU, Results
from bench.quality.settings import FULL, QUICK, Settings
from svdiff import DirectoryCache, SpectralShiftModel, attach, load_pipeline, pipeline_components

log = logging.getLogger("bench.quality")
ROOT = Path(__file__).resolve().parents[2]
# The last rows are the ablations of the recipe's Cut-Mix changes, one each: collages phrased only left half first,
# and collage halves cut from the photos' centres.
PAIR_CONFIGS: dict[str, dict[str, object]] = {
    NO_CMU: {"cut_mix_unmix": False}, CMU: {"cut_mix_unmix": True},
    CMU_ONE_PHRASING: {"cut_mix_unmix": True, "mix_phrasings": ()},
    CMU_CENTRE: {"cut_mix_unmix": True, "collage_crop": "centre"},
}  # fmt: skip
STRESS_METHODS = ("svdiff", "full")
PARTS = frozenset({"scored", "stress", "ablations", "pairs"})


def ablations(settings: Settings) -> dict[str, dict[str, Any]]:
    """SVDiff recipe variants (TrainConfig overrides) each scored on the scored subjects, at SVDiff's calibrated
    rate and steps: each row removes one change the recipe keeps (the token rows, the prompt templates)."""
    return {"no token rows (spectral shifts alone)": {"token_rows": False},
            "one prompt (the paper's, no templates)": {"prompt_templates": ()}}


class Bench:
    def __init__(self, settings: Settings, out: Path, cache_dir: Path, base: Path = BASE_MODEL_PATH,
                 reader_path: Path = READER_PATH) -> None:  # fmt: skip
        self.settings, self.out, self.base_path = settings, out, base
        self.reader: AttributeReader = load_reader(reader_path)
        self.prior_cache = DirectoryCache(cache_dir / "class-images")
        self.base = Tuned("base", load_pipeline(base))
        self.svd_pipe = load_pipeline(base)
        self.shifts: SpectralShiftModel = attach(pipeline_components(self.svd_pipe), cache=cache_dir / "svd")
        self.results = Results()

    def train(self, method: str, names: Sequence[str], settings: Settings, budgets: Sequence[int] = (),
              on_budget: OnBudget | None = None, **overrides: Any) -> Tuned:  # fmt: skip
        subjects = [SUBJECTS[name] for name in names]
        if method == "svdiff":
            return train_svdiff(self.svd_pipe, self.shifts, subjects, settings, self.prior_cache, budgets, on_budget,
                                **overrides)  # fmt: skip
        return train_baseline(method, subjects, settings, self.prior_cache, self.base_path, budgets, on_budget,
                              **overrides)  # fmt: skip

    def train_one(self, method: str, name: str, settings: Settings, budgets: Sequence[int],
                  on_budget: OnBudget) -> Tuned:  # fmt: skip
        return self.train(method, [name], settings, budgets, on_budget)

    def scored(self, method: str, name: str, **overrides: Any) -> SingleResult:
        started = time.perf_counter()
        settings = self.results.method_settings.get(method, self.settings)
        tuned = self.base if method == "base" else self.train(method, [name], settings, **overrides)
        result = evaluate_single(tuned, SUBJECTS[name], self.reader, self.settings)
        log.info("%s %s%s: %.0fs; fidelity %s prompt %s drift %s", name, method, f" {overrides}" if overrides else "",
                 time.perf_counter() - started, result.context.subject, result.context.prompt, result.drift)
        if method != "base":
            tuned.pipe = None  # free the fine-tuned copies; the numbers stay
        gc.collect()
        return result

    def run_subject(self, name: str) -> None:
        self.results.single[name] = {method: self.scored(method, name) for method in METHODS}
        self.results.ceilings[name] = ceilings(SUBJECTS[name], self.base.pipe.vae, self.reader, self.settings)
        photos = SUBJECTS[name].photos(self.settings.photos)
        n = self.settings.grid_samples
        per_method = self.results.single[name]
        save_grid(self.out / f"context_{name}.png",
                  [("training photos", photos), *[(LABELS[m], per_method[m].context_images) for m in METHODS]], n,
                  f"{name}: first context prompt, seeds 0-{n - 1}")  # fmt: skip
        save_grid(self.out / f"drift_{name}.png", [(LABELS[m], per_method[m].drift_images) for m in METHODS], n,
                  f"{name}: bare class prompt (language drift)")  # fmt: skip

    def run_pairs(self) -> None:
        names = self.settings.pair
        svdiff = self.results.method_settings.get("svdiff", self.settings)
        # Two subjects share one run: twice the single-subject budget, so each is seen about as often as alone.
        settings = replace(svdiff, steps=2 * svdiff.steps)
        rows = []
        for label, overrides in PAIR_CONFIGS.items():
            tuned = self.train("svdiff", names, settings, **overrides)
            result = evaluate_pair(tuned, names, self.reader, self.settings)
            log.info("pair %s: both %s", label, result.overall.both)
            self.results.pairs[label] = result
            rows += [(f"{label} ({phrasing})", images) for phrasing, images in result.images.items()]
        photos = [photo for name in names for photo in SUBJECTS[name].photos(self.settings.photos)[:2]]
        save_grid(self.out / "pair.png", [("training photos", photos), *rows], self.settings.grid_samples,
                  f"two subjects side by side: {names[0]} and {names[1]}")

    def run(self, pairs: bool = True, parts: frozenset[str] = PARTS, calibrated: tuple[str, ...] = CALIBRATED,
            fixed: dict[str, tuple[float, int]] | None = None) -> Results:  # fmt: skip
        """`calibrated`: the methods the rule calibrates; `fixed`: method -> (rate, steps) an earlier calibration
        chose, for the methods it does not."""
        started = time.perf_counter()
        s = self.settings
        self.results.base_following = prompt_following(self.base.pipe, self.reader, s.base_eval_samples, s.seed,
                                                       s.sample_steps, s.guidance).rates()
        log.info("base prompt following: %s", self.results.base_following)
        for method, (lr, steps) in (fixed or {}).items():
            self.results.method_settings[method] = replace(with_lr(s, method, lr), steps=steps)
        if s.calibrate and calibrated:
            self.results.calibration = calibrate(self.train_one, self.reader, s, calibrated)
            for method in self.results.calibration.trials:
                self.results.method_settings[method] = chosen(s, self.results.calibration, method)
        for name in s.subjects if "scored" in parts else ():
            self.run_subject(name)
        for name in s.stress_subjects if "stress" in parts else ():
            self.results.stress[name] = {method: self.scored(method, name) for method in STRESS_METHODS}
        if s.ablations and "ablations" in parts:
            svdiff = self.results.method_settings.get("svdiff", s)
            for label, overrides in ablations(svdiff).items():
                self.results.ablations[label] = {name: self.scored("svdiff", name, **overrides) for name in s.subjects}
        if pairs and "pairs" in parts:
            self.run_pairs()
        self.results.seconds = time.perf_counter() - started
        return self.results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 subject, 2 steps, 1 sample per prompt")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results, var/quality-quick if quick)")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "quality", help="class images and SVD cache")
    parser.add_argument("--base", type=Path, default=BASE_MODEL_PATH, help="the base pipeline folder")
    parser.add_argument("--reader", type=Path, default=READER_PATH, help="the attribute reader's folder")
    parser.add_argument("--steps", type=int, help="override the training steps (diagnostics, not the benchmark)")
    parser.add_argument("--subjects", help="override the scored subjects, comma-separated (diagnostics)")
    parser.add_argument("--no-calibrate", action="store_true", help="train with the centre rates (diagnostics)")
    parser.add_argument("--lr", action="append", default=[], metavar="METHOD=RATE",
                        help="train METHOD (svdiff, full, lora) at RATE, e.g. an earlier run's calibrated one; "
                             "implies --no-calibrate (diagnostics)")  # fmt: skip
    parser.add_argument("--calibrate", default=",".join(CALIBRATED),
                        help="comma-separated methods the rule calibrates (default: all); the others need --fixed")
    parser.add_argument("--fixed", action="append", default=[], metavar="METHOD=RATE@STEPS",
                        help="train METHOD at the RATE and STEPS an earlier calibration chose (a method left out of "
                             "--calibrate)")  # fmt: skip
    parser.add_argument("--no-pairs", action="store_true", help="skip the two-subject part (diagnostics)")
    parser.add_argument("--no-ablations", action="store_true", help="skip the recipe ablations (diagnostics)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 while other jobs share the CPU)")
    parser.add_argument("--parts", default=",".join(sorted(PARTS)),
                        help="comma-separated parts to run after calibration (to split a run)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.steps is not None:
        if args.steps < 1:
            parser.error("--steps must be at least 1")
        settings = replace(settings, steps=args.steps)
    if args.subjects:
        unknown = [name for name in args.subjects.split(",") if name not in SUBJECTS]
        if unknown:
            parser.error(f"unknown subjects {unknown}; known: {sorted(SUBJECTS)}")
        settings = replace(settings, subjects=tuple(args.subjects.split(",")))
    for given in args.lr:
        method, _, rate = given.partition("=")
        try:
            settings = with_lr(settings, method, float(rate))
        except ValueError as error:
            parser.error(f"--lr {given}: {error}")
    if args.no_calibrate or args.lr:
        settings = replace(settings, calibrate=False)
    if args.no_ablations:
        settings = replace(settings, ablations=False)
    parts = frozenset(args.parts.split(","))
    if not parts <= PARTS:
        parser.error(f"unknown parts {sorted(parts - PARTS)}; known: {sorted(PARTS)}")
    calibrated = tuple(name for name in args.calibrate.split(",") if name)
    fixed: dict[str, tuple[float, int]] = {}
    for given in args.fixed:
        method, _, value = given.partition("=")
        rate, _, steps = value.partition("@")
        try:
            with_lr(settings, method, float(rate))
            fixed[method] = (float(rate), int(steps))
        except ValueError as error:
            parser.error(f"--fixed {given}: {error} (METHOD=RATE@STEPS, e.g. svdiff=9e-3@800)")
        if fixed[method][1] < 1:
            parser.error(f"--fixed {given}: steps must be at least 1")
    if unknown_methods := set(calibrated) - set(CALIBRATED):
        parser.error(f"--calibrate: unknown methods {sorted(unknown_methods)}; known: {list(CALIBRATED)}")
    if settings.calibrate and (missing := set(CALIBRATED) - set(calibrated) - set(fixed)):
        parser.error(f"{sorted(missing)}: neither calibrated nor --fixed")
    if overlap := set(calibrated) & set(fixed):
        parser.error(f"{sorted(overlap)}: both calibrated and --fixed")
    out = args.out or (ROOT / "var" / "quality-quick" if args.quick else ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = Bench(settings, out, args.cache, args.base, args.reader)
    results = bench.run(pairs=not args.no_pairs, parts=parts, calibrated=calibrated, fixed=fixed)
    wall = time.perf_counter() - started
    write_report(out / "quality.md", bench.settings, results, wall, args.threads)
    print(quality_line(results))
