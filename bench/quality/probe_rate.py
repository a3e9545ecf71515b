"""Diagnostic: one method at rates beyond its calibration grid, on the calibration subject (never scored).

    python -m bench.quality.probe_rate --method lora --lr 9e-4,2.7e-3,8.1e-3 --steps 200,400,800

Each rate trains one run, scored at each step budget on the subject's context prompts (8 samples each), its bare
class prompt and its training prompt, as the benchmark scores a subject. It says whether a method that the
calibration rule could not bring anywhere (every trial scored 0) has a rate that works; it changes no setting.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

import torch

from basemodel.subjects import SUBJECTS
from bench.quality.calibrate import CALIBRATED, with_lr
from bench.quality.evaluate import evaluate_single
from bench.quality.methods import Tuned
from bench.quality.run import ROOT, Bench
from bench.quality.settings import FULL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=CALIBRATED, default="lora")
    parser.add_argument("--lr", default="9e-4,2.7e-3,8.1e-3", help="comma-separated rates")
    parser.add_argument("--steps", default="200,400,800", help="comma-separated step budgets of each run")
    parser.add_argument("--subject", default=FULL.calibration_subject)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.subject in FULL.subjects:
        parser.error(f"{args.subject} is a scored subject: probe on the calibration subject")
    budgets = sorted(int(x) for x in args.steps.split(","))
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    bench = Bench(replace(FULL, calibrate=False, ablations=False), ROOT / "var" / "probe", ROOT / "var" / "quality")
    subject = SUBJECTS[args.subject]
    print(f"| {args.method} lr | steps | subject fidelity | shape, colour, pattern | prompt | drift | training prompt "
          "| train s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lr in (float(x) for x in args.lr.split(",")):
        settings = with_lr(bench.settings, args.method, lr)

        def on_budget(tuned: Tuned, lr: float = lr) -> None:
            result = evaluate_single(tuned, subject, bench.reader, bench.settings)
            c = result.context
            print(f"| {lr:g} | {tuned.steps} | {c.subject} | {c.combination} | {c.prompt} | {result.drift} | "
                  f"{result.training_prompt} | {tuned.seconds:.0f} |", flush=True)

        bench.train_one(args.method, args.subject, settings, budgets, on_budget).pipe = None


if __name__ == "__main__":
    main()
