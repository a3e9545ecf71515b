"""`make bench-svd`: attach time with a cold SVD cache (computing every factor) and a warm one (reading them)."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

from bench.architectures import cpu_bench_unet
from svdiff import attach


def _bundled_base() -> dict[str, nn.Module] | None:
    try:
        from diffusers import StableDiffusionPipeline

        from basemodel import BASE_MODEL_PATH
    except ImportError:
        return None
    if not (BASE_MODEL_PATH / "model_index.json").exists():
        return None
    pipe = StableDiffusionPipeline.from_pretrained(str(BASE_MODEL_PATH))
    return {"unet": pipe.unet, "text_encoder": pipe.text_encoder}


def _seeded_bench_unet() -> dict[str, nn.Module]:
    torch.manual_seed(0)  # the same weights both times, as a reloaded base model has
    return {"unet": cpu_bench_unet()}


def _measure(name: str, build: Callable[[], dict[str, nn.Module] | None]) -> None:
    with tempfile.TemporaryDirectory() as cache:
        times = []
        for _ in range(2):
            components = build()
            if components is None:
                print(f"| {name} | not available | | |")
                return
            started = time.perf_counter()
            model = attach(components, cache=cache)
            times.append(time.perf_counter() - started)
        print(f"| {name} | {model.num_values():,} | {times[0]:.2f} | {times[1]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("| model | shift values | cold cache: attach (s) | warm cache: attach (s) |\n| --- | ---: | ---: | ---: |")
    _measure("bundled base (UNet + text encoder)", _bundled_base)
    _measure("bench UNet 64-128-256-256", _seeded_bench_unet)


if __name__ == "__main__":
    main()
