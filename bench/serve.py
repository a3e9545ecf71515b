"""`make bench-serve`: images per second when one resident pipeline serves many subjects, against one subject and
against loading the pipeline for every request.

Four ways to make the same images (same prompts, seeds, steps, guidance and count) on the bundled base:
- one: one subject's shifts merged once into a resident pipeline (its own copy); each round's images in one batch;
- switch: the worker's way: per request, merge that subject's shifts into the resident pipeline, generate, restore;
- batched: every subject's request in one batch, each sample with its own shifts (svdiff's per-sample forward);
- naive: per request, the pipeline loaded from disk, shifts attached (SVD factors from a warm cache), the checkpoint
  applied, generate;
- naive_svd (context, not in the `serve:` line): as naive, but the SVD computed again at every load and kept nowhere,
  as the public SVDiff code does.
Each round makes one image per subject with every method; the methods take turns round by round (the order
rotates), so drifting machine load hits all alike, and images per second come from each method's median round;
the table also gives images per CPU-second of this process, which other processes' share of the cores leaves alone.
The subjects' checkpoints are random shifts of a trained checkpoint's size, written and read back by
svdiff.checkpoint (float16, as the service stores them); every request but those of `one` parses its checkpoint.
Before timing, each batched image is checked against its subject generated alone with its shifts merged (same
seed). Prints a table, then the `serve:` line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import svdiff
from svdiff.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from svdiff.factorize import Factors, SVDCache
from svdiff.layers import SpectralShiftMatrix
from svdiff.model import Shifts, SpectralShiftModel
from svdiff.pipeline import resolution
from svdiff.sample import GenerationRequest, generate, generate_batch, merged

METHODS = ("one", "switch", "batched", "naive", "naive_svd")
LABELS = {
    "one": "(a) one subject, merged once",
    "switch": "(b) N subjects, merge/restore per request",
    "batched": "(c) N subjects in one batch, per-sample shifts",
    "naive": "(d) naive: pipeline loaded per request",
    "naive_svd": "(e) as (d), SVD recomputed per load (public code)",
}
# What AdamW at the paper's rates leaves after a few hundred steps: a step moves a value by about the rate
# (1e-3 for singular values, 1e-6 for norm scales), and noisy gradients make the walk ~sqrt(steps) long.
MATRIX_SHIFT_STD = 0.05
NORM_SHIFT_STD = 2e-4
TOKENS = ("sks", "zwx", "qlt", "vxp", "bnq", "kfz", "wqj", "xjr")
SHAPES = ("star", "circle", "square", "triangle", "cross", "diamond")
CHECK_TOLERANCE = 1e-3  # of the [0, 1] pixel range: a quarter of one 8-bit level


@dataclass(frozen=True)
class ServeConfig:
    base: Path
    subjects: int = 4
    steps: int = 10
    guidance: float = 5.0
    seed: int = 0


@dataclass
class Server:
    """The resident state: a pipeline with shifts attached, another with subject 0 merged for good, and the files."""

    config: ServeConfig
    pipe: Any
    model: SpectralShiftModel
    one_pipe: Any
    checkpoints: list[Path]
    svd_cache: Path
    prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    max_difference: float  # batched image vs its subject alone, max over pixels and subjects
    min_subject_gap: float  # the smallest max-pixel difference between two subjects' images (nonzero: a real test)

    @property
    def passed(self) -> bool:
        return self.max_difference <= CHECK_TOLERANCE < self.min_subject_gap


def random_shifts(model: SpectralShiftModel, generator: torch.Generator) -> Shifts:
    """Small normal shifts on every shifted layer, as a trained checkpoint holds."""
    shifts: Shifts = {}
    for key, layer in model.layers.items():
        std = MATRIX_SHIFT_STD if isinstance(layer, SpectralShiftMatrix) else NORM_SHIFT_STD
        shifts[key] = torch.randn(layer.delta.shape, generator=generator) * std
    return shifts


def write_checkpoints(model: SpectralShiftModel, count: int, folder: Path, seed: int) -> list[Path]:
    """`count` checkpoint files, written by svdiff.checkpoint from the model's own deltas; the deltas end at zero."""
    generator = torch.Generator().manual_seed(seed)
    paths = []
    for index in range(count):
        model.load_shifts(random_shifts(model, generator))
        subject = {"token": TOKENS[index % len(TOKENS)], "class_word": SHAPES[index % len(SHAPES)]}
        checkpoint = Checkpoint.from_model(model, "bench-serve", subjects=[subject])
        path = folder / f"subject-{index}.safetensors"
        save_checkpoint(checkpoint, path)
        paths.append(path)
    model.zero_()
    return paths


def prompts_for(count: int) -> list[str]:
    return [f"a photo of {TOKENS[i % len(TOKENS)]} {SHAPES[i % len(SHAPES)]}, on a grass background"
            for i in range(count)]


class NoSVDCache(SVDCache):
    """Factors computed at every attach and stored nowhere."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))

    def load(self, model_fingerprint: str, layer: str) -> Factors | None:
        return None

    def store(self, model_fingerprint: str, layer: str, factors: Factors) -> None:
        return None


def load(base: Path, svd_cache: Path | SVDCache) -> tuple[Any, SpectralShiftModel]:
    """What any process does first: the pipeline from disk, then its shifts attached (factors from the cache)."""
    pipe = svdiff.load_pipeline(base)
    return pipe, svdiff.attach(svdiff.pipeline_components(pipe), svdiff.ShiftConfig(), cache=svd_cache)


def start(config: ServeConfig, folder: Path) -> Server:
    """Load the resident pipelines, write the checkpoints, warm the SVD cache; merge subject 0 into `one_pipe`."""
    svd_cache = folder / "svd"
    pipe, model = load(config.base, svd_cache)
    checkpoints = write_checkpoints(model, config.subjects, folder, config.seed)
    one_pipe, one_model = load(config.base, svd_cache)
    one_model.merge(load_checkpoint(checkpoints[0]).shifts)  # once: every later image of `one` samples plainly
    return Server(config, pipe, model, one_pipe, checkpoints, svd_cache, prompts_for(config.subjects),
                  [config.seed + i for i in range(config.subjects)])


def _options(config: ServeConfig) -> dict[str, Any]:
    return {"steps": config.steps, "guidance_scale": config.guidance}


def run_one(server: Server) -> int:
    requests = [GenerationRequest(p, [], seed=s) for p, s in zip(server.prompts, server.seeds, strict=True)]
    images = generate_batch(server.one_pipe, None, requests, mode="merge", **_options(server.config))
    return sum(len(i) for i in images)


def run_switch(server: Server) -> int:
    count = 0
    for path, prompt, seed in zip(server.checkpoints, server.prompts, server.seeds, strict=True):
        checkpoint = load_checkpoint(path)
        count += len(generate(server.pipe, server.model, prompt, checkpoints=[(checkpoint, 1.0)], seed=seed,
                              **_options(server.config)))
    return count


def run_batched(server: Server) -> int:
    requests = [GenerationRequest(prompt, [(load_checkpoint(path), 1.0)], seed=seed)
                for path, prompt, seed in zip(server.checkpoints, server.prompts, server.seeds, strict=True)]
    images = generate_batch(server.pipe, server.model, requests, mode="per_sample", **_options(server.config))
    return sum(len(i) for i in images)


def run_naive(server: Server, svd_cache: Path | SVDCache | None = None) -> int:
    count = 0
    for path, prompt, seed in zip(server.checkpoints, server.prompts, server.seeds, strict=True):
        pipe, model = load(server.config.base, svd_cache or server.svd_cache)
        checkpoint = load_checkpoint(path)
        count += len(generate(pipe, model, prompt, checkpoints=[(checkpoint, 1.0)], seed=seed,
                              **_options(server.config)))
    return count


def run_naive_svd(server: Server) -> int:
    return run_naive(server, NoSVDCache())


RUNNERS: dict[str, Callable[[Server], int]] = {
    "one": run_one, "switch": run_switch, "batched": run_batched, "naive": run_naive, "naive_svd": run_naive_svd,
}


def _pixels(server: Server, prompts: list[str], seeds: list[int]) -> np.ndarray:
    """Float images in [0, 1], (B, H, W, 3), from the resident pipeline as it stands."""
    with torch.no_grad():
        out = server.pipe(prompt=prompts, num_inference_steps=server.config.steps,
                          guidance_scale=server.config.guidance, output_type="np",
                          generator=[torch.Generator().manual_seed(s) for s in seeds])
    return np.asarray(out.images, dtype=np.float64)


def check_batched_equals_alone(server: Server) -> Check:
    """Each subject's image from one per-sample batch against the same subject alone, shifts merged, same seed."""
    shifts = [load_checkpoint(path).shifts for path in server.checkpoints]
    with server.model.per_sample(list(shifts)):
        batched = _pixels(server, server.prompts, server.seeds)
    alone = []
    for subject, prompt, seed in zip(shifts, server.prompts, server.seeds, strict=True):
        with merged(server.model, subject):
            alone.append(_pixels(server, [prompt], [seed])[0])
    # The subjects' own gap, with one prompt and seed for all: shows the shifts change the images.
    same = []
    for subject in shifts:
        with merged(server.model, subject):
            same.append(_pixels(server, server.prompts[:1], server.seeds[:1])[0])
    gaps = [float(np.abs(a - b).max()) for i, a in enumerate(same) for b in same[i + 1 :]]
    return Check(float(np.abs(batched - np.stack(alone)).max()), min(gaps, default=float("inf")))


def _request_once(server: Server) -> dict[str, float]:
    """One naive request, part by part, in seconds (generate runs on the resident pipeline, merged)."""
    marks = [time.perf_counter()]
    pipe = svdiff.load_pipeline(server.config.base)
    marks.append(time.perf_counter())
    svdiff.attach(svdiff.pipeline_components(pipe), svdiff.ShiftConfig(), cache=server.svd_cache)
    marks.append(time.perf_counter())
    checkpoint = load_checkpoint(server.checkpoints[0])
    marks.append(time.perf_counter())
    server.model.merge(checkpoint.shifts)
    server.model.restore()
    marks.append(time.perf_counter())
    with merged(server.model, checkpoint.shifts):
        marks.append(time.perf_counter())
        generate(server.pipe, None, server.prompts[0], seed=server.seeds[0], **_options(server.config))
        marks.append(time.perf_counter())
    names = ("load", "attach", "checkpoint", "merge+restore")
    seconds = {name: marks[i + 1] - marks[i] for i, name in enumerate(names)}
    return {**seconds, "generate": marks[6] - marks[5]}


def request_parts(server: Server, repeats: int = 3) -> dict[str, float]:
    """Median seconds of each part of a naive request; switching keeps all but `load` and `attach`."""
    runs = [_request_once(server) for _ in range(repeats)]
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def describe_parts(parts: dict[str, float]) -> str:
    kept = parts["checkpoint"] + parts["merge+restore"] + parts["generate"]
    listed = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in parts.items())
    return (f"request (median of 3): {listed}; switching saves load + attach, so switch/naive <= "
            f"{(kept + parts['load'] + parts['attach']) / kept:.2f}")


@dataclass
class Rounds:
    """Seconds per round of one method: wall clock, and this process's CPU time (what the method itself did,
    without the time other processes held the core)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def measure(server: Server, repeats: int, warmup: int = 1,
            methods: Sequence[str] = METHODS) -> dict[str, Rounds]:
    """Rounds of each method; rounds interleave the methods and rotate their order."""
    for _ in range(warmup):
        for name in methods:
            RUNNERS[name](server)
    times = {name: Rounds() for name in methods}
    for round_index in range(repeats):
        shift = round_index % len(methods)
        for name in [*methods[shift:], *methods[:shift]]:
            wall, cpu = time.perf_counter(), time.process_time()
            made = RUNNERS[name](server)
            times[name].wall.append(time.perf_counter() - wall)
            times[name].cpu.append(time.process_time() - cpu)
            if made != server.config.subjects:
                raise RuntimeError(f"{name} made {made} images, expected {server.config.subjects}")
    return times


def rates(times: dict[str, list[float]], images_per_round: int) -> dict[str, float]:
    """Images per second of the median round: bursts of load from other processes move the mean, not the median."""
    return {name: images_per_round / statistics.median(t) for name, t in times.items()}


def report(times: dict[str, Rounds], images_per_round: int) -> str:
    ips = rates({name: r.wall for name, r in times.items()}, images_per_round)
    cpu = rates({name: r.cpu for name, r in times.items()}, images_per_round)
    lines = ["| method | images | seconds | median round (s) | images/s | vs one-subject "
             "| images/CPU-s | vs one (CPU) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, rounds in times.items():
        lines.append(f"| {LABELS[name]} | {images_per_round * len(rounds.wall)} | {sum(rounds.wall):.2f} "
                     f"| {statistics.median(rounds.wall):.3f} | {ips[name]:.3f} | {ips[name] / ips['one']:.2f}x "
                     f"| {cpu[name]:.3f} | {cpu[name] / cpu['one']:.2f}x |")
    lines.append(f"serve: one={ips['one']:.3f} switch={ips['switch']:.3f} batched={ips['batched']:.3f} "
                 f"naive={ips['naive']:.3f} batched_vs_one={ips['batched'] / ips['one']:.2f} "
                 f"switch_vs_naive={ips['switch'] / ips['naive']:.2f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="pipeline folder (default: the bundled base)")
    parser.add_argument("--subjects", type=int, default=4, help="N: subjects, and images per method per round")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-naive-svd", action="store_true", help="skip row (e), the slowest")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.base is None:
        from basemodel import BASE_MODEL_PATH

        args.base = BASE_MODEL_PATH
    config = ServeConfig(args.base, args.subjects, args.steps, args.guidance, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        server = start(config, Path(folder))
        check = check_batched_equals_alone(server)
        size = resolution(server.pipe)
        print(f"base={config.base.name} {size}x{size} subjects={config.subjects} steps={config.steps} "
              f"guidance={config.guidance} rounds={args.repeats} on CPU, {torch.get_num_threads()} threads")
        print(f"check: batched vs alone (merged, same seed) max |difference| {check.max_difference:.1e} of the "
              f"pixel range (tolerance {CHECK_TOLERANCE:.0e}); subjects differ by >= {check.min_subject_gap:.3f}")
        if not check.passed:
            raise SystemExit("check failed: per-sample images do not equal their subjects generated alone")
        print(describe_parts(request_parts(server)))
        methods = [m for m in METHODS if not (args.no_naive_svd and m == "naive_svd")]
        times = measure(server, args.repeats, args.warmup, methods)
    print(report(times, config.subjects))


if __name__ == "__main__":
    main()
