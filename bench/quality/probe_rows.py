"""Diagnostic: SVDiff with token rows at several row rates, on the calibration subject (never scored).

    python -m bench.quality.probe_rows --row-lr 0,1e-3,3e-3,9e-3 --steps 400

Each row rate trains SVDiff at the settings' fixed rate (or `--lr`) and scores the subject's context prompts, its
bare class prompt and its training prompt as the benchmark does; 0 trains without token rows. This is how
basemodel/recipe.py's TOKEN_ROWS_LEARNING_RATE was chosen: no scored subject takes part.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace

import torch

from basemodel.subjects import SUBJECTS
from bench.quality.evaluate import evaluate_single
from bench.quality.run import ROOT, Bench
from bench.quality.settings import FULL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row-lr", default="0,1e-3,3e-3", help="comma-separated row rates (0: no token rows)")
    parser.add_argument("--lr", type=float, default=9e-3, help="SVDiff's 2-D/4-D shift rate")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--subject", default=FULL.calibration_subject)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.subject in FULL.subjects:
        parser.error(f"{args.subject} is a scored subject: probe on the calibration subject")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = replace(FULL, svdiff_lr=args.lr, steps=args.steps, calibrate=False, ablations=False)
    bench = Bench(settings, ROOT / "var" / "probe", ROOT / "var" / "quality")
    print("| row lr | subject fidelity | details | shape, colour, pattern | prompt | drift | training prompt | s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row_lr in (float(x) for x in args.row_lr.split(",")):
        started = time.perf_counter()
        overrides = {"token_rows": row_lr > 0, "lr_rows": row_lr or settings.lr_rows}
        tuned = bench.train("svdiff", [args.subject], settings, **overrides)
        result = evaluate_single(tuned, SUBJECTS[args.subject], bench.reader, settings)
        c = result.context
        print(f"| {row_lr:g} | {c.subject} | {c.details} | {c.combination} | {c.prompt} | {result.drift} | "
              f"{result.training_prompt} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
