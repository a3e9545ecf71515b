"""Orchestration: train every method on every subject, evaluate, write the report and grids, print the line."""

from __future__ import annotations

import argparse
import gc
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from basemodel import BASE_MODEL_PATH, READER_PATH
from basemodel.evaluate import prompt_following
from basemodel.reader import AttributeReader, load_reader
from bench.quality.calibrate import Calibration, apply, calibrate, with_lr
from bench.quality.evaluate import PairResult, SingleResult, ceilings, evaluate_pair, evaluate_single
from bench.quality.grids import save_grid
from bench.quality.methods import BENCH_SUBJECTS, LABELS, METHODS, Tuned, train_baseline, train_svdiff
from bench.quality.report import quality_line, write_report
from bench.quality.scoring import SingleScores
from bench.quality.settings import FULL, QUICK, Settings
from svdiff import DirectoryCache, SpectralShiftModel, attach, load_pipeline, pipeline_components

log = logging.getLogger("bench.quality")
ROOT = Path(__file__).resolve().parents[2]
PAIR_CONFIGS: dict[str, dict[str, object]] = {  # name -> TrainConfig overrides; the first is "without", the last "with"
    "joint, no Cut-Mix": {"cut_mix_unmix": False},
    "Cut-Mix, no unmix loss": {"cut_mix_unmix": True, "unmix_weight": 0.0},
    "Cut-Mix-Unmix": {"cut_mix_unmix": True},  # svdiff's default unmix_weight
}


@dataclass
class Results:
    single: dict[str, dict[str, SingleResult]] = field(default_factory=dict)  # subject -> method -> result
    tuned: dict[str, dict[str, Tuned]] = field(default_factory=dict)  # subject -> method -> (pipe dropped)
    ceilings: dict[str, dict[str, SingleScores]] = field(default_factory=dict)  # subject -> kind -> scores
    pairs: dict[str, PairResult] = field(default_factory=dict)
    pair_tuned: dict[str, Tuned] = field(default_factory=dict)
    base_following: dict[str, float] = field(default_factory=dict)  # basemodel.evaluate.prompt_following
    calibration: Calibration | None = None
    seconds: float = 0.0


class Bench:
    def __init__(self, settings: Settings, out: Path, cache_dir: Path, base: Path = BASE_MODEL_PATH) -> None:
        self.settings, self.out, self.base_path = settings, out, base
        self.reader: AttributeReader = load_reader(READER_PATH)
        self.prior_cache = DirectoryCache(cache_dir / "class-images")
        self.base = Tuned("base", load_pipeline(base))
        self.svd_pipe = load_pipeline(base)
        self.shifts: SpectralShiftModel = attach(pipeline_components(self.svd_pipe), cache=cache_dir / "svd")
        self.results = Results()

    def train(self, method: str, name: str, settings: Settings | None = None) -> Tuned:
        subjects, settings = [BENCH_SUBJECTS[name]], settings or self.settings
        if method == "base":
            return self.base
        if method == "svdiff":
            return train_svdiff(self.svd_pipe, self.shifts, subjects, settings, self.prior_cache)
        return train_baseline(method, subjects, settings, self.prior_cache, self.base_path)

    def run_subject(self, name: str) -> None:
        subject = BENCH_SUBJECTS[name]
        self.results.single[name], self.results.tuned[name] = {}, {}
        for method in METHODS:
            started = time.perf_counter()
            tuned = self.train(method, name)
            trained = time.perf_counter()
            result = evaluate_single(tuned, subject, self.reader, self.settings)
            result.sample_seconds = time.perf_counter() - trained
            log.info("%s %s: trained %.0fs (steps %.0fs), sampled %.0fs; fidelity %.2f prompt %.2f drift %.2f",
                     name, method, trained - started, tuned.seconds, result.sample_seconds, result.context.subject,
                     result.context.prompt, result.drift.subject)
            self.results.single[name][method] = result
            if method != "base":
                tuned.pipe = None  # free the fine-tuned copies; the numbers stay
            self.results.tuned[name][method] = tuned
            gc.collect()
        self.results.ceilings[name] = ceilings(subject, self.base.pipe.vae, self.reader, self.settings)
        photos = subject.photos(self.settings.photos)
        n = self.settings.grid_samples
        context = [(f"{LABELS[m]}", self.results.single[name][m].context_images) for m in METHODS]
        save_grid(self.out / f"context_{name}.png", [("training photos", photos), *context], n,
                  f"{name}: first context prompt, seeds 0-{n - 1}")
        drift = [(f"{LABELS[m]}", self.results.single[name][m].drift_images) for m in METHODS]
        save_grid(self.out / f"drift_{name}.png", drift, n, f"{name}: bare class prompt (language drift)")

    def run_pairs(self) -> None:
        names = self.settings.pair
        subjects = [BENCH_SUBJECTS[name] for name in names]
        rows = []
        for label, overrides in PAIR_CONFIGS.items():
            started = time.perf_counter()
            tuned = train_svdiff(self.svd_pipe, self.shifts, subjects, self.settings, self.prior_cache, **overrides)
            result = evaluate_pair(tuned, names, self.reader, self.settings)
            log.info("pair %s: %.0fs; both %.2f", label, time.perf_counter() - started, result.overall.both)
            self.results.pairs[label], self.results.pair_tuned[label] = result, tuned
            rows += [(f"{label} ({phrasing})", images) for phrasing, images in result.images.items()]
        photos = [photo for s in subjects for photo in s.photos(self.settings.photos)[:2]]
        save_grid(self.out / "pair.png", [("training photos", photos), *rows], self.settings.grid_samples,
                  f"two subjects side by side: {names[0]} and {names[1]}")

    def run(self, pairs: bool = True) -> Results:
        started = time.perf_counter()
        s = self.settings
        self.results.base_following = prompt_following(self.base.pipe, self.reader, s.base_eval_samples, s.seed,
                                                       s.sample_steps, s.guidance).rates()
        log.info("base prompt following: %s", self.results.base_following)
        if s.calibrate:
            self.results.calibration = calibrate(self.train, self.reader, s)
            self.settings = apply(s, self.results.calibration)
        for name in self.settings.subjects:
            self.run_subject(name)
        if pairs:
            self.run_pairs()
        self.results.seconds = time.perf_counter() - started
        return self.results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 subject, 3 steps, 2 samples per prompt")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results, var/quality-quick if quick)")
    parser.add_argument("--cache", type=Path, default=ROOT / "var" / "quality", help="class images and SVD cache")
    parser.add_argument("--base", type=Path, default=BASE_MODEL_PATH, help="the base pipeline folder")
    parser.add_argument("--steps", type=int, help="override the training steps (diagnostics, not the benchmark)")
    parser.add_argument("--subjects", help="override the subjects, comma-separated (diagnostics)")
    parser.add_argument("--no-calibrate", action="store_true", help="train with the recipes' rates (diagnostics)")
    parser.add_argument("--lr", action="append", default=[], metavar="METHOD=RATE",
                        help="train METHOD (svdiff, full, lora) at RATE, e.g. an earlier run's calibrated one; "
                             "implies --no-calibrate (diagnostics)")  # fmt: skip
    parser.add_argument("--no-pairs", action="store_true", help="skip the two-subject part (diagnostics)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 while other jobs share the CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    if args.subjects:
        settings = replace(settings, subjects=tuple(args.subjects.split(",")))
    for given in args.lr:
        method, _, rate = given.partition("=")
        try:
            settings = with_lr(settings, method, float(rate))
        except ValueError as error:
            parser.error(f"--lr {given}: {error}")
    if args.no_calibrate or args.lr:
        settings = replace(settings, calibrate=False)
    out = args.out or (ROOT / "var" / "quality-quick" if args.quick else ROOT / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = Bench(settings, out, args.cache, args.base)
    results = bench.run(pairs=not args.no_pairs)
    wall = time.perf_counter() - started
    write_report(out / "quality.md", bench.settings, results, wall, args.threads)
    print(quality_line(results))
