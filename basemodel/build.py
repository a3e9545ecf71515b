"""Build the base model from scratch: `python -m basemodel.build` (`make base-model`).

Stages: the autoencoder; the UNet with its text encoder (saving pipeline snapshots as it goes); the decoder refined
on the frozen encoder (stage 1b: the UNet's latents do not change); and the attribute reader, trained to read
renders and their round trips through the refined autoencoder. The UNet run ends with its live weights and two
moving averages of them; the build ships whichever follows validation prompts best by the reader's account (prompt
seed 100, which no reported figure uses), with the refined decoder. Each stage stops on a step count or a time
budget, whichever comes first. On two or more cores the decoder and then the reader train in a process of their own
beside the UNet (both need only the autoencoder), and the UNet's batches are rendered and encoded in another, so
each core does one thing.
"""

from __future__ import annotations

import argparse
import copy
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
from basemodel.refine_decoder import DecoderRefinement, refine_decoder, round_trip_mse
from basemodel.tokenizer import build_tokenizer
from basemodel.train_reader import ReaderTraining, evaluate, train_reader
from basemodel.train_unet import Denoiser, UNetTraining, train_unet
from basemodel.train_vae import train_vae

log = logging.getLogger("basemodel.build")
STAGES = ("vae", "unet", "decoder", "reader")
# Per-stage time budgets of `make base-model`; the decoder's and the reader's run one after the other beside the
# UNet's, so the whole build takes about the autoencoder's and the UNet's, plus saving and choosing the weights.
DEFAULT_MINUTES = {"vae": 10.0, "unet": UNetTraining.minutes, "decoder": DecoderRefinement.minutes,
                   "reader": ReaderTraining.minutes}  # fmt: skip
SIDE_STAGES = ("decoder", "reader")
VALIDATION_SEED = 100  # prompts for choosing the shipped weights; reported figures use seeds 0-3
VALIDATION_PROMPTS = 128


class Build:
    """Where one build writes: `<out>/tiny-sd`, `<out>/reader` and what it did in `<out>/build.json`."""

    def __init__(self, out: Path, work_dir: Path) -> None:
        self.out, self.work_dir = out, work_dir
        self.pipeline_dir, self.reader_dir, self.info = out / "tiny-sd", out / "reader", out / "build.json"
        self.vae_dir, self.candidates_dir = work_dir / "vae", work_dir / "candidates"
        self.refined_dir = work_dir / "vae-refined"

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

    def choose(self, reader_dir: Path, prompts: int, vae_dir: Path) -> None:
        """Ship the candidate whose samples the reader finds the prompted attributes in most often (the mean over
        shape, colour, pattern, position and background), each sampled and shipped with the autoencoder at
        `vae_dir` (the refined one, when this build made it)."""
        start = time.monotonic()
        reader, vae = load_reader(reader_dir), load_vae(vae_dir)
        scores: dict[str, float] = {}
        for candidate in sorted(self.candidates_dir.iterdir()):
            pipeline = load(candidate)
            pipeline.vae = vae
            following = prompt_following(pipeline, reader, n=prompts, seed=VALIDATION_SEED)
            scores[candidate.name] = following.mean_attribute_rate()
            log.info("candidate %s: %.1f%% of prompted attributes found", candidate.name, 100 * scores[candidate.name])
        chosen = max(sorted(scores), key=lambda name: scores[name])
        staging = self.pipeline_dir.with_name(self.pipeline_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.candidates_dir / chosen, staging)
        shutil.rmtree(staging / "vae")
        copy.deepcopy(vae).to(torch.float16).save_pretrained(staging / "vae", safe_serialization=True)
        shutil.rmtree(self.pipeline_dir, ignore_errors=True)
        staging.rename(self.pipeline_dir)
        info = json.loads(self.info.read_text())["unet"]
        self.record("unet", **{**info, "final": True, "chosen": chosen,
                               "validation": {"seed": VALIDATION_SEED, "prompts": prompts, "mean_attribute": scores},
                               "choice_minutes": round((time.monotonic() - start) / 60, 1)})  # fmt: skip

    def decoder(self, minutes: float, threads: int, source: Path) -> dict[str, object]:
        """Refine the decoder of the autoencoder at `source` and save it apart; returns what to record."""
        torch.set_num_threads(threads)
        start = time.monotonic()
        vae = load_vae(source)
        before = round_trip_mse(vae)
        refine_decoder(vae, DecoderRefinement(minutes=minutes))
        vae.save_pretrained(self.refined_dir)
        return {"minutes": round((time.monotonic() - start) / 60, 1), "source": str(source),
                "round_trip_mse": {"before": round(before, 5), "after": round(round_trip_mse(vae), 5)}}  # fmt: skip

    def reader(self, minutes: float, threads: int, vae_source: Path | None = None) -> dict[str, object]:
        """Train, save and evaluate the reader (on round trips through the autoencoder at `vae_source` too);
        returns what to record (the caller records it)."""
        torch.set_num_threads(threads)
        start = time.monotonic()
        vae = load_vae(vae_source) if vae_source is not None else None
        reader = train_reader(ReaderTraining(minutes=minutes), vae)
        reader.save(self.reader_dir)
        accuracy = evaluate(reader, n_images=1000)
        log.info("reader accuracy on 1000 fresh renders: %s", accuracy)
        facts: dict[str, object] = {
            "minutes": round((time.monotonic() - start) / 60, 1),
            "accuracy": {name: round(value, 4) for name, value in accuracy.items()},
        }
        if vae is not None:
            trips = evaluate(reader, n_images=1000, vae=vae)
            facts["round_trip_accuracy"] = {name: round(value, 4) for name, value in trips.items()}
        return facts

    def shipped_vae(self, fallback: Path) -> Path:
        """The refined autoencoder when this build made one, else the one the UNet trained on."""
        return self.refined_dir if (self.refined_dir / "config.json").exists() else fallback

    def side_facts(self, stage: str) -> Path:
        """Where the side process leaves a stage's facts: build.json has one writer, the main process."""
        return self.work_dir / f"{stage}-stage.json"

    def side_stages(self, stages: tuple[str, ...], minutes: dict[str, float], threads: int, vae_source: Path) -> None:
        """The decoder's stage, then the reader's on the autoencoder it made."""
        if "decoder" in stages:
            self.side_facts("decoder").write_text(json.dumps(self.decoder(minutes["decoder"], threads, vae_source)))
        if "reader" in stages:
            facts = self.reader(minutes["reader"], threads, self.shipped_vae(vae_source))
            self.side_facts("reader").write_text(json.dumps(facts))


def _side_process(out: Path, work_dir: Path, stages: tuple[str, ...], minutes: dict[str, float], threads: int,
                  vae_source: Path) -> None:  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Build(out, work_dir).side_stages(stages, minutes, threads, vae_source)


def build(stages: tuple[str, ...], minutes: dict[str, float], out: Path, work_dir: Path, threads: int,
          parallel: bool, validation_prompts: int = VALIDATION_PROMPTS, init_from: Path | None = None,
          unet_lr: float = UNetTraining.lr) -> None:  # fmt: skip
    """`parallel`: the decoder's and the reader's stages in their own process beside the UNet's, and the UNet's
    batches prefetched."""
    target = Build(out, work_dir)
    out.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    for stage in SIDE_STAGES:
        target.side_facts(stage).unlink(missing_ok=True)
    if "decoder" in stages:
        shutil.rmtree(target.refined_dir, ignore_errors=True)
    # The autoencoder the UNet trains on: this build's, the continued pipeline's, or the shipped one.
    vae_source = target.vae_dir if "vae" in stages else init_from / "vae" if init_from else BASE_MODEL_PATH / "vae"
    side_stages = tuple(stage for stage in SIDE_STAGES if stage in stages)
    side = None

    def check_side() -> None:
        if side is not None and side.exitcode not in (None, 0):
            raise RuntimeError(f"the decoder or reader stage failed (exit code {side.exitcode})")

    try:
        if "vae" in stages:
            target.vae(minutes["vae"])
        if side_stages and parallel:  # started once the autoencoder exists: both stages need only it
            arguments = (out, work_dir, side_stages, minutes, threads, vae_source)
            side = mp.get_context("spawn").Process(target=_side_process, daemon=True, args=arguments)
            side.start()
        if "unet" in stages:
            target.unet(minutes["unet"], prefetch=parallel, fresh_vae="vae" in stages, init_from=init_from, lr=unet_lr)
        if side is not None:
            side.join()
            check_side()
        elif side_stages:
            target.side_stages(side_stages, minutes, threads, vae_source)
        for stage in side_stages:
            target.record(stage, **json.loads(target.side_facts(stage).read_text()))
        if "unet" in stages:
            # A reader this build made (in this run or an earlier one into the same folder) reads its own world best.
            own_reader = "reader" in stages or (target.reader_dir / "config.json").exists()
            target.choose(target.reader_dir if own_reader else READER_PATH, validation_prompts,
                          target.shipped_vae(vae_source))  # fmt: skip
    finally:
        if side is not None and side.is_alive():
            side.terminate()
            side.join()


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
