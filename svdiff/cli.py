"""`svdiff` on the command line: train subjects from folders of photos, sample from checkpoints, edit a photo."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from tqdm import tqdm

from svdiff.checkpoint import load_checkpoint, save_checkpoint
from svdiff.data import image_files
from svdiff.edit import edit
from svdiff.model import SpectralShiftModel, attach, pipeline_components
from svdiff.pipeline import load_pipeline
from svdiff.prior import DirectoryCache
from svdiff.sample import generate
from svdiff.state import Progress, TrainState
from svdiff.train import train
from svdiff.train_config import MixedPrecision, Subject, TrainConfig


def default_base() -> str | None:
    """The project's bundled tiny base model, when it is installed and built."""
    try:
        from basemodel import BASE_MODEL_PATH  # imported lazily: svdiff works without it
    except ImportError:
        return None
    return str(BASE_MODEL_PATH) if Path(BASE_MODEL_PATH).exists() else None


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "svdiff"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default=None, help="base model: hub id or folder (default: the bundled one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--svd-cache", type=Path, default=None, help="SVD factor cache folder")
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="svdiff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train 1-3 subjects into one checkpoint")
    _common(p)
    p.add_argument("--subject", action="append", required=True, metavar="TOKEN:CLASS:FOLDER",
                   help="a subject: its rare token, class word and photo folder (repeat for 2-3 subjects)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--class-images", type=int, default=TrainConfig.num_class_images)
    p.add_argument("--class-image-steps", type=int, default=TrainConfig.class_image_steps)
    p.add_argument("--no-prior", action="store_true", help="train without prior preservation")
    p.add_argument("--no-text-encoder", action="store_true", help="leave the text encoder's shifts at zero")
    p.add_argument("--token-rows", action="store_true",
                   help="also learn each identifier's own embedding row (off in the paper's recipe)")
    p.add_argument("--lr-rows", type=float, default=TrainConfig.lr_rows, help="the token rows' learning rate")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--prior-cache", type=Path, default=_cache_root() / "prior")
    p.add_argument("--state", type=Path, default=None, help="resumable state: saved as it goes, resumed if present")
    p.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)

    p = commands.add_parser("sample", help="generate images from a prompt and checkpoints")
    _common(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--checkpoint", action="append", default=[], metavar="FILE[:SCALE]")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--num-images", "-n", type=int, default=1)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--out", type=Path, required=True, help="folder for the images")

    p = commands.add_parser("edit", help="edit one photo by changing the prompt that describes it")
    _common(p)
    p.add_argument("image", type=Path)
    p.add_argument("--source", required=True, help="a prompt that describes the photo")
    p.add_argument("--target", required=True, help="the prompt of the edited photo")
    p.add_argument("--strength", type=float, default=0.0)
    p.add_argument("--noise", choices=["slerp", "eta"], default="slerp")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--out", type=Path, required=True, help="image file to write")
    return parser


def _pipeline(args: argparse.Namespace, *, half: bool) -> tuple[Any, SpectralShiftModel, str]:
    base = args.base or default_base()
    if base is None:
        raise SystemExit("svdiff: no base model: pass --base (a hub id or a local folder)")
    dtype = torch.float16 if half and args.device.startswith("cuda") else torch.float32
    pipe = load_pipeline(base, device=args.device, dtype=dtype)
    return pipe, attach(pipeline_components(pipe), cache=args.svd_cache), str(base)


def _subjects(specs: Sequence[str]) -> list[Subject]:
    subjects = []
    for spec in specs:
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise SystemExit(f"svdiff: --subject wants TOKEN:CLASS:FOLDER, got {spec!r}")
        token, class_word, folder = parts
        subjects.append(Subject(token, class_word, list(image_files(folder))))
    return subjects


class StopOnInterrupt:
    """Ctrl-C asks the run to stop after its current step instead of killing it mid-step."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def close(self) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _write_state(path: Path, state: TrainState) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(state.to_bytes())
    tmp.replace(path)


def run_train(args: argparse.Namespace) -> int:
    subjects = _subjects(args.subject)
    pipe, model, base = _pipeline(args, half=False)
    precision: MixedPrecision = args.mixed_precision or ("bf16" if args.device.startswith("cuda") else "no")
    config = TrainConfig(steps=args.steps, lr=args.lr, num_class_images=args.class_images,
                         class_image_steps=args.class_image_steps, prior_preservation=not args.no_prior,
                         train_text_encoder=not args.no_text_encoder, mixed_precision=precision,
                         gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, token_rows=args.token_rows, lr_rows=args.lr_rows)
    resume = args.state.read_bytes() if args.state is not None and args.state.exists() else None
    bar = tqdm(total=config.steps, desc="train", unit="step")
    interrupt = StopOnInterrupt()

    def progress(p: Progress) -> bool:
        bar.n = p.step
        bar.set_postfix(loss=f"{p.loss:.4f}")
        bar.refresh()
        return not interrupt.requested

    on_state = (lambda state: _write_state(args.state, state)) if args.state is not None else None
    try:
        result = train(pipe, subjects, config, shifts=model, prior_cache=DirectoryCache(args.prior_cache),
                       callback=progress, resume=resume, on_state=on_state, base_model_name=base)
    finally:
        bar.close()
        interrupt.close()
    if result.canceled:
        if args.state is not None:
            _write_state(args.state, result.state)
            print(f"stopped at step {result.step}; resume with the same command (state: {args.state})")
        return 130
    size = save_checkpoint(result.checkpoint, args.out)
    if args.state is not None:
        args.state.unlink(missing_ok=True)  # finished: a later run with this --state starts afresh
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {result.checkpoint.num_values()} shifts)")
    return 0


def _checkpoint_arg(text: str) -> tuple[Path, float]:
    path, _, scale = text.rpartition(":")
    if path and scale.replace(".", "", 1).lstrip("-").isdigit():
        return Path(path), float(scale)
    return Path(text), 1.0


def run_sample(args: argparse.Namespace) -> int:
    pipe, model, _ = _pipeline(args, half=True)
    checkpoints = [(load_checkpoint(path), scale) for path, scale in map(_checkpoint_arg, args.checkpoint)]
    bar = tqdm(total=args.steps or 50, desc="sample", unit="step")

    def progress(step: int, total: int) -> None:
        bar.total, bar.n = total, step
        bar.refresh()

    try:
        images = generate(pipe, model, args.prompt, checkpoints=checkpoints, negative_prompt=args.negative_prompt,
                          num_images=args.num_images, seed=args.seed, steps=args.steps,
                          guidance_scale=args.guidance, callback=progress)
    finally:
        bar.close()
    args.out.mkdir(parents=True, exist_ok=True)
    for generated in images:
        path = args.out / f"{generated.seed}.png"
        generated.image.save(path)
        print(path)
    return 0


def run_edit(args: argparse.Namespace) -> int:
    pipe, model, base = _pipeline(args, half=False)
    bar = tqdm(total=args.finetune_steps + 2 * args.steps, desc="edit", unit="step")

    def progress(p: Progress) -> None:
        bar.n = p.step
        bar.refresh()

    try:
        result = edit(pipe, args.image, args.source, args.target, shifts=model, steps=args.steps,
                      strength=args.strength, noise=args.noise, finetune_steps=args.finetune_steps,
                      guidance_scale=args.guidance, seed=args.seed, callback=progress, base_model_name=base)
    finally:
        bar.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.image.save(args.out)
    print(args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"train": run_train, "sample": run_sample, "edit": run_edit}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
