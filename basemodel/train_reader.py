"""Stage 3: the attribute reader, trained on fresh renders of the whole world, held-out attributes included."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from basemodel import world
from basemodel.data import to_tensor
from basemodel.reader import HEADS, AttributeReader, scene_labels
from basemodel.refine_decoder import round_trips

log = logging.getLogger(__name__)

# Example ids of the reader's training renders lie below this; evaluations draw theirs above it.
EVAL_ID_START = 10**9
_READER_STREAM = 2


def reader_scene(example_id: int) -> world.Scene:
    """The scene of a reader example: any shape, colour, pattern, background, one or two objects."""
    return world.sample_scene(np.random.default_rng([example_id, _READER_STREAM]), world.FULL_PALETTE)


def labelled_batch(example_ids: range) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Renders and per-head targets; -100 (ignored by cross-entropy) where a head does not apply."""
    scenes = [reader_scene(i) for i in example_ids]
    targets = {name: torch.full((len(scenes),), -100, dtype=torch.long) for name in HEADS}
    for row, scene in enumerate(scenes):
        for name, index in scene_labels(scene).items():
            targets[name][row] = index
    return to_tensor([world.render(scene) for scene in scenes]), targets


def _degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild blur and noise on half the batch, so that decoded samples, which are never pixel-sharp, read too."""
    n = images.shape[0]
    kernel = torch.tensor([1.0, 2.0, 1.0]) / 4.0
    kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    choose = (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).float()
    noisy = blurred + 0.04 * torch.randn(images.shape, generator=generator)
    return choose * noisy + (1.0 - choose) * images


@torch.no_grad()
def _round_trip(images: torch.Tensor, vae: AutoencoderKL, share: float, generator: torch.Generator) -> torch.Tensor:
    """`share` of the batch through the autoencoder (encode, decode), so that the reader reads what the decoder
    makes of an image, as in every sample the base model draws, and not only the render itself."""
    chosen = torch.rand(images.shape[0], generator=generator) < share
    if not chosen.any():
        return images
    out = images.clone()
    latents = vae.encode(images[chosen]).latent_dist.sample(generator)
    out[chosen] = vae.decode(latents).sample.clamp(-1.0, 1.0)
    return out


@dataclass(frozen=True)
class ReaderTraining:
    seed: int = 3
    max_steps: int = 5000
    # Instance details (marks above all) take the reader longer than the attributes: 12 minutes read marks right on
    # 79% of fresh renders (basemodel/README.md).
    minutes: float = 25.0
    batch_size: int = 64
    lr: float = 2e-3
    round_trip_share: float = 0.5  # of each batch, when trained with the base's autoencoder


def train_reader(config: ReaderTraining, vae: AutoencoderKL | None = None) -> AttributeReader:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    reader = AttributeReader()
    optimizer = torch.optim.AdamW(reader.parameters(), lr=config.lr, weight_decay=1e-4)
    start = time.monotonic()
    reader.train()
    for step in range(config.max_steps):
        progress = max(step / config.max_steps, (time.monotonic() - start) / (config.minutes * 60))
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / 50) * 0.5 * (1.0 + math.cos(math.pi * progress))
        ids = range(step * config.batch_size, (step + 1) * config.batch_size)
        images, targets = labelled_batch(ids)
        if vae is not None:
            images = _round_trip(images, vae, config.round_trip_share, generator)
        logits = reader(_degrade(images, generator))
        losses = [F.cross_entropy(logits[name], targets[name]) for name in HEADS if (targets[name] >= 0).any()]
        loss = torch.stack(losses).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            log.info("reader step %d loss %.3f (%.2f steps/s)", step, loss.item(),
                     (step + 1) / (time.monotonic() - start))  # fmt: skip
    log.info("reader stops after %d steps, %.1f minutes", step, (time.monotonic() - start) / 60)
    return reader.eval()


@torch.no_grad()
def evaluate(
    reader: AttributeReader, n_images: int = 200, first_id: int = EVAL_ID_START, vae: AutoencoderKL | None = None
) -> dict[str, float]:
    """Per-head accuracy on fresh renders whose ids no training batch used (with `vae`: on their round trips)."""
    images, targets = labelled_batch(range(first_id, first_id + n_images))
    if vae is not None:
        images = round_trips(vae, images)
    logits = reader.eval()(images)
    accuracy = {}
    for name in HEADS:
        applies = targets[name] >= 0
        hits = logits[name].argmax(dim=1)[applies] == targets[name][applies]
        accuracy[name] = hits.float().mean().item()
    return accuracy


def main() -> None:
    """Retrain the shipped reader against the shipped autoencoder: `python -m basemodel.train_reader --minutes 25`."""
    import argparse
    import json

    from basemodel import PRETRAINED_DIR, READER_PATH
    from basemodel.pipeline import load
    from basemodel.reader import load_reader

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--minutes", type=float, default=ReaderTraining.minutes)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", type=int, default=1000, help="fresh renders in the before/after check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    vae = load().vae
    old = load_reader()
    before = {"render": evaluate(old, args.check), "round_trip": evaluate(old, args.check, vae=vae)}
    config = ReaderTraining(minutes=args.minutes)
    start = time.monotonic()
    reader = train_reader(config, vae)
    after = {"render": evaluate(reader, args.check), "round_trip": evaluate(reader, args.check, vae=vae)}
    print(f"{'head':16s} {'render before':>13s} {'after':>6s} {'trip before':>12s} {'after':>6s}")
    for name in HEADS:
        print(f"{name:16s} {before['render'][name]:13.3f} {after['render'][name]:6.3f} "
              f"{before['round_trip'][name]:12.3f} {after['round_trip'][name]:6.3f}")  # fmt: skip
    reader.save(READER_PATH)
    record = PRETRAINED_DIR / "build.json"
    build = json.loads(record.read_text())
    def rounded(accuracy: dict[str, float]) -> dict[str, float]:
        return {name: round(value, 4) for name, value in accuracy.items()}

    build["reader"] = {
        "minutes": round((time.monotonic() - start) / 60, 1),
        "round_trip_share": config.round_trip_share,
        "accuracy": rounded(after["render"]),
        "round_trip_accuracy": rounded(after["round_trip"]),
        "previous": {part: rounded(accuracy) for part, accuracy in before.items()},
    }
    record.write_text(json.dumps(build, indent=2) + "\n")


if __name__ == "__main__":
    main()
