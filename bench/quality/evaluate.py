"""Sampling the evaluation prompts from a trained method and scoring them with the reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from basemodel import vocab, world
from basemodel.data import to_images, to_tensor
from basemodel.reader import AttributeReader
from basemodel.subjects import Subject
from bench.quality.methods import BENCH_SUBJECTS, Tuned, sample, token_for
from bench.quality.prompts import context_prompts, drift_prompt, pair_prompts
from bench.quality.scoring import (
    DriftScores,
    PairScores,
    SingleScores,
    read_single,
    score_context,
    score_drift,
    score_pairs,
    shows,
)
from bench.quality.settings import Settings
from svdiff.cutmix import SUBJECT_PROMPT

CONTEXT_SEED, DRIFT_SEED, PAIR_SEED, TRAINING_SEED, PROMPT_STRIDE = 1000, 5000, 7000, 9000, 100


@dataclass
class SingleResult:
    context: SingleScores
    drift: DriftScores
    training_prompt: float  # subject fidelity on the training prompt itself: was the subject learnt at all?
    context_images: list[Image.Image]  # the first context prompt's samples, for the grid
    drift_images: list[Image.Image]
    sample_seconds: float = 0.0


@dataclass
class PairResult:
    overall: PairScores
    per_prompt: dict[str, PairScores] = field(default_factory=dict)  # by phrasing
    images: dict[str, list[Image.Image]] = field(default_factory=dict)


def evaluate_single(tuned: Tuned, subject: Subject, reader: AttributeReader, settings: Settings,
                    context_seed: int = CONTEXT_SEED, training_seed: int = TRAINING_SEED) -> SingleResult:  # fmt: skip
    prompts = context_prompts(subject, token_for(subject.name), settings.photos)
    images: list[Image.Image] = []
    backgrounds: list[str] = []
    positions: list[str] = []
    first: list[Image.Image] = []
    for i, prompt in enumerate(prompts):
        batch = sample(tuned, prompt.text, settings.context_samples, context_seed + PROMPT_STRIDE * i, settings)
        first = first or batch
        images += batch
        backgrounds += [prompt.background] * len(batch)
        positions += [prompt.position] * len(batch)
    drift_images = sample(tuned, drift_prompt(subject), settings.drift_samples, DRIFT_SEED, settings)
    own = sample(tuned, SUBJECT_PROMPT.format(token=token_for(subject.name), class_word=subject.class_word),
                 settings.drift_samples, training_seed, settings)
    learnt = float(np.mean([shows(o, subject) for o in read_single(reader, own)]))
    return SingleResult(score_context(reader, images, subject, backgrounds, positions),
                        score_drift(reader, drift_images, subject), learnt, first, drift_images)


def evaluate_pair(tuned: Tuned, names: tuple[str, str], reader: AttributeReader, settings: Settings) -> PairResult:
    first, second = (BENCH_SUBJECTS[name] for name in names)
    prompts = pair_prompts((first, token_for(first.name)), (second, token_for(second.name)))
    all_images: list[Image.Image] = []
    all_sides: list[tuple[Subject, Subject]] = []
    result = PairResult(PairScores(0, 0.0, 0.0, 0.0, 0.0, 0.0))
    for j, prompt in enumerate(prompts):
        images = sample(tuned, prompt.text, settings.pair_samples, PAIR_SEED + PROMPT_STRIDE * j, settings)
        sides = [(BENCH_SUBJECTS[prompt.left], BENCH_SUBJECTS[prompt.right])] * len(images)
        result.per_prompt[prompt.phrasing] = score_pairs(reader, images, sides)
        result.images[prompt.phrasing] = images
        all_images += images
        all_sides += sides
    result.overall = score_pairs(reader, all_images, all_sides)
    return result


def context_scenes(subject: Subject, settings: Settings,
                   seed: int = 0) -> tuple[list[world.Scene], list[str], list[str]]:
    """Renders of what each context prompt asks for (the subject at that position on that background, random
    size and jitter): the images a perfect model would sample."""
    rng = np.random.default_rng([seed, 9])
    scenes, backgrounds, positions = [], [], []
    for prompt in context_prompts(subject, token_for(subject.name), settings.photos):
        for _ in range(settings.context_samples):
            size = str(rng.choice(vocab.SIZES))
            spec = world.sample_object(rng, world.FULL_PALETTE, prompt.position, size)
            spec = world.ObjectSpec(subject.shape, subject.colour, subject.pattern, prompt.position, size, spec.dx,
                                    spec.dy)
            scenes.append(world.Scene((spec,), prompt.background, int(rng.integers(2**31))))
            backgrounds.append(prompt.background)
            positions.append(prompt.position)
    return scenes, backgrounds, positions


@torch.no_grad()
def ceilings(subject: Subject, vae: Any, reader: AttributeReader, settings: Settings) -> dict[str, SingleScores]:
    """The scores of perfect samples as rendered ("renders": the reader's own ceiling) and after an autoencoder
    round trip ("VAE round trips": the ceiling any sample decoded from latents can reach)."""
    scenes, backgrounds, positions = context_scenes(subject, settings)
    images = [world.render_image(scene) for scene in scenes]
    pixels = to_tensor([np.asarray(image) for image in images])
    decoded = vae.decode(vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean).sample
    round_trips = [Image.fromarray(a) for a in to_images(decoded.float().cpu())]
    return {"renders": score_context(reader, images, subject, backgrounds, positions),
            "VAE round trips": score_context(reader, round_trips, subject, backgrounds, positions)}
