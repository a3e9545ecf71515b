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
from basemodel.subjects import SUBJECTS, Subject
from bench.quality.methods import Tuned, sample, token_for
from bench.quality.prompts import context_prompts, drift_prompt, pair_prompts
from bench.quality.rates import Rate
from bench.quality.scoring import PairScores, SingleScores, score_context, score_drift, score_pairs, score_shown
from bench.quality.settings import Settings
from svdiff.cutmix import SUBJECT_PROMPT

CONTEXT_SEED, DRIFT_SEED, PAIR_SEED, TRAINING_SEED, PROMPT_STRIDE = 1000, 5000, 7000, 9000, 100


@dataclass
class SingleResult:
    context: SingleScores
    drift: Rate
    training_prompt: Rate  # subject fidelity on the training prompt itself: was the subject learnt at all?
    context_images: list[Image.Image]  # the first context prompt's samples, for the grid
    drift_images: list[Image.Image]
    seconds: float = 0.0  # training
    steps: int = 0
    checkpoint_bytes: int = 0
    trainable: int = 0
    final_loss: float | None = None


@dataclass
class PairResult:
    overall: PairScores
    per_prompt: dict[str, PairScores] = field(default_factory=dict)  # by phrasing
    images: dict[str, list[Image.Image]] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0


@dataclass(frozen=True)
class Sampling:
    """How many samples an evaluation draws, and from which seeds."""

    per_context_prompt: int
    drift: int
    context_seed: int = CONTEXT_SEED
    drift_seed: int = DRIFT_SEED
    training_seed: int = TRAINING_SEED


def scored_sampling(settings: Settings) -> Sampling:
    return Sampling(settings.context_samples, settings.drift_samples)


def evaluate_single(tuned: Tuned, subject: Subject, reader: AttributeReader, settings: Settings,
                    sampling: Sampling | None = None) -> SingleResult:  # fmt: skip
    sampling = sampling or scored_sampling(settings)
    token = token_for(subject.name)
    images: list[Image.Image] = []
    backgrounds: list[str] = []
    positions: list[str] = []
    first: list[Image.Image] = []
    for i, prompt in enumerate(context_prompts(subject, token, settings.photos)):
        batch = sample(tuned, prompt.text, sampling.per_context_prompt, sampling.context_seed + PROMPT_STRIDE * i,
                       settings)  # fmt: skip
        first = first or batch
        images += batch
        backgrounds += [prompt.background] * len(batch)
        positions += [prompt.position] * len(batch)
    drift_images = sample(tuned, drift_prompt(subject), sampling.drift, sampling.drift_seed, settings)
    own = sample(tuned, SUBJECT_PROMPT.format(token=token, class_word=subject.class_word), sampling.drift,
                 sampling.training_seed, settings)  # fmt: skip
    return SingleResult(score_context(reader, images, subject, backgrounds, positions),
                        score_drift(reader, drift_images, subject), score_shown(reader, own, subject), first,
                        drift_images, tuned.seconds, tuned.steps, tuned.checkpoint_bytes, tuned.trainable,
                        tuned.final_loss)  # fmt: skip


def evaluate_pair(tuned: Tuned, names: tuple[str, str], reader: AttributeReader, settings: Settings) -> PairResult:
    first, second = (SUBJECTS[name] for name in names)
    prompts = pair_prompts((first, token_for(first.name)), (second, token_for(second.name)))
    all_images: list[Image.Image] = []
    all_sides: list[tuple[Subject, Subject]] = []
    per_prompt, images_by = {}, {}
    for j, prompt in enumerate(prompts):
        images = sample(tuned, prompt.text, settings.pair_samples, PAIR_SEED + PROMPT_STRIDE * j, settings)
        sides = [(SUBJECTS[prompt.left], SUBJECTS[prompt.right])] * len(images)
        per_prompt[prompt.phrasing] = score_pairs(reader, images, sides)
        images_by[prompt.phrasing] = images
        all_images += images
        all_sides += sides
    return PairResult(score_pairs(reader, all_images, all_sides), per_prompt, images_by, tuned.seconds, tuned.steps)


def context_scenes(subject: Subject, settings: Settings,
                   seed: int = 0) -> tuple[list[world.Scene], list[str], list[str]]:
    """Renders of what each context prompt asks for (the subject at that position on that background, random
    size and jitter): the images a perfect model would sample."""
    rng = np.random.default_rng([seed, 9])
    scenes, backgrounds, positions = [], [], []
    for prompt in context_prompts(subject, token_for(subject.name), settings.photos):
        for _ in range(settings.context_samples):
            size = str(rng.choice(vocab.SIZES))
            jitter = world.sample_object(rng, world.FULL_PALETTE, prompt.position, size)
            scenes.append(world.Scene((subject.spec(prompt.position, size, jitter.dx, jitter.dy),), prompt.background,
                                      int(rng.integers(2**31))))  # fmt: skip
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
