"""Does the base model follow its prompts? Sample random base-world prompts and read the samples back.

`python -m basemodel.evaluate --n 64` prints, per attribute, how often the reader finds what the prompt asked for.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline

from basemodel import BASE_MODEL_PATH, DEFAULT_GUIDANCE, DEFAULT_STEPS, READER_PATH, world
from basemodel.pipeline import load
from basemodel.reader import AttributeReader, Reading, load_reader, scene_reading
from basemodel.train_reader import EVAL_ID_START, labelled_batch

_PROMPT_STREAM = 5
Layout = Literal["single", "pair"]


def prompt_scenes(n: int, seed: int = 0) -> list[world.Scene]:
    """Random base-world scenes (no held-out attribute) whose full captions serve as prompts."""
    rng = np.random.default_rng([seed, _PROMPT_STREAM])
    return [world.sample_scene(rng, world.BASE_PALETTE) for _ in range(n)]


def _agreement(asked: Reading, read: Reading) -> dict[str, bool]:
    pairs = list(zip(asked.objects, read.objects, strict=True))
    hits = {kind: all(getattr(a, kind) == getattr(r, kind) for a, r in pairs)
            for kind in ("shape", "colour", "pattern", "position")}  # fmt: skip
    hits["background"] = asked.background == read.background
    hits["shape_and_colour"] = hits["shape"] and hits["colour"]
    hits["all"] = all(hits.values())
    return hits


def sample(pipeline: StableDiffusionPipeline, prompts: Sequence[str], seed: int, steps: int, guidance: float,
           batch_size: int = 16) -> list[np.ndarray]:  # fmt: skip
    images: list[np.ndarray] = []
    for start in range(0, len(prompts), batch_size):
        generator = torch.Generator().manual_seed(seed + start)
        batch = pipeline(list(prompts[start : start + batch_size]), height=world.FRAME, width=world.FRAME,
                         num_inference_steps=steps, guidance_scale=guidance, generator=generator).images  # fmt: skip
        images += [np.asarray(image) for image in batch]
    return images


@dataclass
class Following:
    """Per sample: its layout ("single" or "pair") and which prompted attributes the reader found."""

    hits: list[tuple[Layout, dict[str, bool]]]

    def rates(self, layout: Layout | None = None) -> dict[str, float]:
        """Fraction of samples (of one layout, or all) in which the reader finds each prompted attribute."""
        own = [found for sample_layout, found in self.hits if layout in (None, sample_layout)]
        return {attribute: float(np.mean([f[attribute] for f in own])) for attribute in own[0]} if own else {}


def prompt_following(
    pipeline: StableDiffusionPipeline,
    reader: AttributeReader,
    n: int = 64,
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
) -> Following:
    """Sample `n` random base-world prompts and read back, for every object of each prompt, what was asked."""
    scenes = prompt_scenes(n, seed)
    images = sample(pipeline, [world.caption(scene) for scene in scenes], seed, steps, guidance)
    hits: list[tuple[Layout, dict[str, bool]]] = []
    for scene, image in zip(scenes, images, strict=True):
        layout: Layout = "single" if len(scene.objects) == 1 else "pair"
        (reading,) = reader.read([image], layout=layout)
        hits.append((layout, _agreement(scene_reading(scene), reading)))
    return Following(hits)


@torch.no_grad()
def reconstruction_accuracy(vae: AutoencoderKL, reader: AttributeReader, n: int = 200) -> dict[str, float]:
    """The reader's accuracy on autoencoder round trips of fresh renders, held-out attributes included: the
    ceiling the autoencoder puts on what any sample, base or personalized, can show."""
    images, targets = labelled_batch(range(EVAL_ID_START, EVAL_ID_START + n))
    decoded = vae.decode(vae.encode(images).latent_dist.mean).sample.clamp(-1, 1)  # (n, 3, 64, 64)
    logits = reader.eval()(decoded)
    return {name: (logits[name].argmax(1) == targets[name])[targets[name] >= 0].float().mean().item()
            for name in targets}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=BASE_MODEL_PATH)
    parser.add_argument("--reader", type=Path, default=READER_PATH)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument("--by-layout", action="store_true", help="also the rates of one- and two-object prompts")
    parser.add_argument("--reconstructions", action="store_true",
                        help="instead, read autoencoder round trips of fresh renders")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline, reader = load(args.model), load_reader(args.reader)
    if args.reconstructions:
        print(json.dumps(reconstruction_accuracy(pipeline.vae, reader, args.n), indent=2))
        return
    following = prompt_following(pipeline, reader, args.n, args.seed, args.steps, args.guidance)
    report: dict[str, object] = {"n": args.n, "steps": args.steps, "guidance": args.guidance, **following.rates()}
    if args.by_layout:
        for layout in get_args(Layout):
            report[layout] = {"n": sum(own == layout for own, _ in following.hits), **following.rates(layout)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
