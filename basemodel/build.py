"""Build the base model from scratch: `python -m basemodel.build` (`make base-model`).

Stages: the autoencoder, then the UNet with its text encoder (saving pipeline snapshots as it goes), then the
attribute reader. Each stage stops on a step count or a time budget, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from basemodel import BASE_MODEL_PATH, PRETRAINED_DIR, READER_PATH
from basemodel.pipeline import assemble, save
from basemodel.tokenizer import build_tokenizer
from basemodel.train_reader import ReaderTraining, evaluate, train_reader
from basemodel.train_unet import Denoiser, UNetTraining, train_unet
from basemodel.train_vae import train_vae

log = logging.getLogger("basemodel.build")
BUILD_INFO = PRETRAINED_DIR / "build.json"
STAGES = ("vae", "unet", "reader")
# Per-stage time budgets of `make base-model`: with saving and evaluation, the whole build fits in 90 minutes.
DEFAULT_MINUTES = {"vae": 10.0, "unet": 62.0, "reader": 10.0}


def _record(stage: str, **facts: object) -> None:
    info = json.loads(BUILD_INFO.read_text()) if BUILD_INFO.exists() else {}
    info[stage] = facts
    BUILD_INFO.write_text(json.dumps(info, indent=2) + "\n")


def build(stages: tuple[str, ...], minutes: dict[str, float], work_dir: Path) -> None:
    tokenizer = build_tokenizer()
    vae_dir = work_dir / "vae"
    if "vae" in stages:
        start = time.monotonic()
        vae = train_vae(seed=0, max_steps=5000, minutes=minutes["vae"])
        vae.save_pretrained(vae_dir)
        _record("vae", minutes=round((time.monotonic() - start) / 60, 1))
    if "unet" in stages:
        # Without a fresh autoencoder stage, the UNet trains on the shipped one (`--stages unet,reader`).
        vae_source = vae_dir if (vae_dir / "config.json").exists() else BASE_MODEL_PATH / "vae"
        vae = AutoencoderKL.from_pretrained(vae_source, torch_dtype=torch.float32).eval()
        log.info("unet stage: autoencoder from %s", vae_source)
        start = time.monotonic()

        def snapshot(weights: Denoiser, step: int) -> None:
            save(assemble(vae, weights.unet, weights.text_encoder, tokenizer), BASE_MODEL_PATH)
            _record("unet", steps=step, minutes=round((time.monotonic() - start) / 60, 1), final=False)
            log.info("snapshot at step %d saved to %s", step, BASE_MODEL_PATH)

        config = UNetTraining(minutes=minutes["unet"])
        denoiser, steps = train_unet(config, vae, tokenizer, snapshot)
        save(assemble(vae, denoiser.unet, denoiser.text_encoder, tokenizer), BASE_MODEL_PATH)
        _record("unet", steps=steps, minutes=round((time.monotonic() - start) / 60, 1), final=True,
                batch_size=config.batch_size, budget_minutes=config.minutes)  # fmt: skip
    if "reader" in stages:
        start = time.monotonic()
        reader = train_reader(ReaderTraining(minutes=minutes["reader"]))
        reader.save(READER_PATH)
        accuracy = evaluate(reader, n_images=1000)
        log.info("reader accuracy on 1000 fresh renders: %s", accuracy)
        _record("reader", minutes=round((time.monotonic() - start) / 60, 1),
                accuracy={name: round(value, 4) for name, value in accuracy.items()})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    for stage in STAGES:
        parser.add_argument(f"--{stage}-minutes", type=float, default=DEFAULT_MINUTES[stage])
    parser.add_argument("--work-dir", type=Path, default=Path("var/basebuild"))
    # One thread: on a CPU shared with other jobs, two-thread kernels stall on each other (measured 3-8x slower).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    stages = tuple(args.stages.split(","))
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}")
    PRETRAINED_DIR.mkdir(parents=True, exist_ok=True)
    build(stages, {stage: getattr(args, f"{stage}_minutes") for stage in STAGES}, args.work_dir)


if __name__ == "__main__":
    main()
