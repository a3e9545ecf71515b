"""Build the base model from scratch: `python -m basemodel.build` (`make base-model`).

Stages: the autoencoder, then the UNet with its text encoder (saving pipeline snapshots as it goes), and the
attribute reader. The UNet run ends with its live weights and two moving averages of them; the build ships whichever
follows validation prompts best by the reader's account (prompt seed 100, which no reported figure uses). Each
stage stops on a step count or a time budget, whichever comes first. On two or more cores the reader trains in a
process of its own beside the autoencoder, and the UNet's batches are rendered and encoded in a second process, so
each core does one thing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from basemodel import BASE_MODEL_PATH, PRETRAINED_DIR, READER_PATH
from basemodel.evaluate import prompt_following
from basemodel.pipeline import assemble, load, save
from basemodel.prefetch import latent_batches, load_vae
from basemodel.reader import load_reader
from basemodel.tokenizer import build_tokenizer
from basemodel.train_reader import ReaderTraining, evaluate, train_reader
from basemodel.train_unet import Denoiser, UNetTraining, train_unet
from basemodel.train_vae import train_vae

log = logging.getLogger("basemodel.build")
STAGES = ("vae", "unet", "reader")
# Per-stage time budgets of `make base-model`; the reader's runs beside the autoencoder's, so the whole build takes
# about the autoencoder's and the UNet's, plus saving and choosing the shipped weights.
DEFAULT_MINUTES = {"vae": 10.0, "unet": UNetTraining.minutes, "reader": ReaderTraining.minutes}
VALIDATION_SEED = 100  # prompts for choosing the shipped weights; reported figures use seeds 0-3
VALIDATION_PROMPTS = 128


class Build:
    """Where one build writes: `<out>/tiny-sd`, `<out>/reader` and what it did in `<out>/build.json`."""

    def __init__(self, out: Path, work_dir: Path) -> None:
        self.out, self.work_dir = out, work_dir
        self.pipeline_dir, self.reader_dir, self.info = out / "tiny-sd", out / "reader", out / "build.json"
        self.vae_dir, self.candidates_dir = work_dir / "vae", work_dir / "candidates"

    def record(self, stage: str, **facts: object) -> None:
        info = json.loads(self.info.read_text()) if self.info.exists() else {}
        info[stage] = facts
        self.info.write_text(json.dumps(info, indent=2) + "\n")

    def vae(self, minutes: float) -> None:
        start = time.monotonic()
        train_vae(seed=0, max_steps=5000, minutes=minutes).save_pretrained(self.vae_dir)
        self.record("vae", minutes=round((time.monotonic() - start) / 60, 1))

    def unet(self, minutes: float, prefetch: bool, fresh_vae: bool, init_from: Path | None = None,
             lr: float = UNetTraining.lr) -> None:  # fmt: skip
        """`init_from`: a pipeline whose UNet and text encoder to continue training, with its own autoencoder."""
        # Without the autoencoder stage in this build, the UNet trains on the shipped one (`--stages unet`).
        vae_source = init_from / "vae" if init_from else self.vae_dir if fresh_vae else BASE_MODEL_PATH / "vae"
        vae, tokenizer = load_vae(vae_source), build_tokenizer()
        log.info("unet stage: autoencoder from %s, batches %s", vae_source, "prefetched" if prefetch else "inline")
        init = None
        if init_from is not None:
            start_from = load(init_from)
            init = Denoiser(start_from.unet, start_from.text_encoder)
            log.info("unet stage: continues the UNet and text encoder of %s", init_from)
        config = UNetTraining(minutes=minutes, lr=lr)
        start = time.monotonic()

        def snapshot(weights: Denoiser, step: int) -> None:
            save(assemble(vae, weights.unet, weights.text_encoder, tokenizer), self.pipeline_dir)
            self.record("unet", steps=step, minutes=round((time.monotonic() - start) / 60, 1), final=False)
            log.info("snapshot at step %d saved to %s", step, self.pipeline_dir)

        with latent_batches(vae_source, config.seed, config.batch_size, prefetch) as batches:
            trained = train_unet(config, batches, tokenizer, snapshot, init)
        shutil.rmtree(self.candidates_dir, ignore_errors=True)
        for name, weights in trained.candidates().items():
            save(assemble(vae, weights.unet, weights.text_encoder, tokenizer), self.candidates_dir / name)
        self.record("unet", steps=trained.steps, minutes=round((time.monotonic() - start) / 60, 1), final=False,
                    batch_size=config.batch_size, budget_minutes=config.minutes, prefetch=prefetch, lr=config.lr,
                    init_from=str(init_from) if init_from else None)  # fmt: skip

    def choose(self, reader_dir: Path, prompts: int) -> None:
        """Ship the candidate whose samples the reader finds the prompted attributes in most often (the mean over
        shape, colour, pattern, position and background)."""
        start = time.monotonic()
        reader = load_reader(reader_dir)
        scores: dict[str, float] = {}
        for candidate in sorted(self.candidates_dir.iterdir()):
            following = prompt_following(load(candidate), reader, n=prompts, seed=VALIDATION_SEED)
            scores[candidate.name] = following.mean_attribute_rate()
            log.info("candidate %s: %.1f%% of prompted attributes found", candidate.name, 100 * scores[candidate.name])
        chosen = max(sorted(scores), key=lambda name: scores[name])
        staging = self.pipeline_dir.with_name(self.pipeline_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.candidates_dir / chosen, staging)
        shutil.rmtree(self.pipeline_dir, ignore_errors=True)
        staging.rename(self.pipeline_dir)
        info = json.loads(self.info.read_text())["unet"]
        self.record("unet", **{**info, "final": True, "chosen": chosen,
                               "validation": {"seed": VALIDATION_SEED, "prompts": prompts, "mean_attribute": scores},
                               "choice_minutes": round((time.monotonic() - start) / 60, 1)})  # fmt: skip

    def reader(self, minutes: float, threads: int) -> dict[str, object]:
        """Train, save and evaluate the reader; returns what to record (the caller records it)."""
        torch.set_num_threads(threads)
        start = time.monotonic()
        reader = train_reader(ReaderTraining(minutes=minutes))
        reader.save(self.reader_dir)
        accuracy = evaluate(reader, n_images=1000)
        log.info("reader accuracy on 1000 fresh renders: %s", accuracy)
        return {"minutes": round((time.monotonic() - start) / 60, 1),
                "accuracy": {name: round(value, 4) for name, value in accuracy.items()}}  # fmt: skip

    @property
    def reader_facts(self) -> Path:
        """Where a reader process leaves its facts: build.json has one writer, the main process."""
        return self.work_dir / "reader-stage.json"


def _reader_process(out: Path, work_dir: Path, minutes: float, threads: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    target = Build(out, work_dir)
    facts = target.reader(minutes, threads)
    target.reader_facts.write_text(json.dumps(facts))


def build(stages: tuple[str, ...], minutes: dict[str, float], out: Path, work_dir: Path, threads: int,
          parallel: bool, validation_prompts: int = VALIDATION_PROMPTS, init_from: Path | None = None,
          unet_lr: float = UNetTraining.lr) -> None:  # fmt: skip
    """`parallel`: the reader in its own process beside the other stages, and the UNet's batches prefetched."""
    target = Build(out, work_dir)
    out.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    target.reader_facts.unlink(missing_ok=True)
    reader = None
    if "reader" in stages and parallel:
        # Started first: the reader needs nothing from the other stages.
        reader = mp.get_context("spawn").Process(target=_reader_process, daemon=True,
                                                 args=(out, work_dir, minutes["reader"], threads))  # fmt: skip
        reader.start()

    def check_reader() -> None:
        if reader is not None and reader.exitcode not in (None, 0):
            raise RuntimeError(f"the reader stage failed (exit code {reader.exitcode})")

    try:
        if "vae" in stages:
            target.vae(minutes["vae"])
        check_reader()  # before the long stage, not after it
        if "unet" in stages:
            target.unet(minutes["unet"], prefetch=parallel, fresh_vae="vae" in stages, init_from=init_from, lr=unet_lr)
        if reader is not None:
            reader.join()
            check_reader()
            target.record("reader", **json.loads(target.reader_facts.read_text()))
        elif "reader" in stages:
            target.record("reader", **target.reader(minutes["reader"], threads))
        if "unet" in stages:
            # A reader this build made (in this run or an earlier one into the same folder) reads its own world best.
            own_reader = "reader" in stages or (target.reader_dir / "config.json").exists()
            target.choose(target.reader_dir if own_reader else READER_PATH, validation_prompts)
    finally:
        if reader is not None and reader.is_alive():
            reader.terminate()
            reader.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    for stage in STAGES:
        parser.add_argument(f"--{stage}-minutes", type=float, default=DEFAULT_MINUTES[stage])
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR, help="where tiny-sd/, reader/, build.json go")
    parser.add_argument("--work-dir", type=Path, default=Path("var/basebuild"))
    # One thread per process: on a CPU shared with other jobs, two-thread kernels stall on each other (measured
    # 3-8x slower); the second core serves the reader's stage and the UNet's batch producer instead.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--serial", action="store_true",
                        help="one process: no reader beside the other stages, no batch producer")  # fmt: skip
    parser.add_argument("--validation-prompts", type=int, default=VALIDATION_PROMPTS,
                        help="prompts on which the UNet's candidate weights are compared")  # fmt: skip
    parser.add_argument("--init-from", type=Path, default=None,
                        help="continue the UNet and text encoder of this pipeline (with its autoencoder)")  # fmt: skip
    parser.add_argument("--unet-lr", type=float, default=UNetTraining.lr, help="peak learning rate of the UNet stage")
    args = parser.parse_args()
    # `timeout`, `make` and `kill` send SIGTERM: exit through the `finally` blocks that stop the helper processes.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    stages = tuple(args.stages.split(","))
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}")
    if args.validation_prompts < 1:
        parser.error("--validation-prompts must be at least 1")
    if args.init_from is not None and "vae" in stages:
        parser.error("--init-from continues a pipeline with its own autoencoder: leave the vae stage out")
    if not args.unet_lr > 0:
        parser.error("--unet-lr must be positive")
    build(stages, {stage: getattr(args, f"{stage}_minutes") for stage in STAGES}, args.out, args.work_dir,
          args.threads, parallel=not args.serial, validation_prompts=args.validation_prompts,
          init_from=args.init_from, unet_lr=args.unet_lr)  # fmt: skip


if __name__ == "__main__":
    main()
