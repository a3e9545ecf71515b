"""Does the base model follow its prompts? Sample random base-world prompts and read the samples back.

`python -m basemodel.evaluate --n 64` prints, per attribute and layout, how often the reader finds what the prompt
asked for, and how much the reserved identifiers move the text encoder's output next to attribute words; its last
line is `prompt-following: single_min=<f> pairs=<f> token_visibility=<f>`.
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
from basemodel.visibility import token_visibility

_PROMPT_STREAM = 5
Layout = Literal["single", "pair"]
ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "pattern", "position", "background")


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

    def mean_attribute_rate(self) -> float:
        """The mean over shape, colour, pattern, position and background of the rates on all samples."""
        rates = self.rates()
        return float(np.mean([rates[attribute] for attribute in ATTRIBUTES]))

    def single_min(self) -> float:
        """The lowest of the single objects' rates of shape, colour, pattern, position and background."""
        rates = self.rates("single")
        return min(rates[attribute] for attribute in ATTRIBUTES) if rates else float("nan")

    def pairs(self) -> float:
        """How often both halves of a pair have the prompted shape and colour."""
        return self.rates("pair").get("shape_and_colour", float("nan"))


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
    for layout in get_args(Layout):
        report[layout] = {"n": sum(own == layout for own, _ in following.hits), **following.rates(layout)}
    visibility = token_visibility(pipeline.text_encoder, pipeline.tokenizer)
    report["visibility"] = {"identifiers": visibility.identifiers, "attribute_words": visibility.attributes}
    print(json.dumps(report, indent=2))
    print(f"prompt-following: single_min={following.single_min():.3f} pairs={following.pairs():.3f} "
          f"token_visibility={visibility.ratio:.3f}")


if __name__ == "__main__":
    main()
