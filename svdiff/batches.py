"""Assembling each training step's samples: subject photos or Cut-Mix collages, each with its prior sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from svdiff.cutmix import collage, draw_layout, mix_prompt, prior_mix_prompt, subject_prompt
from svdiff.data import random_flip
from svdiff.loop import Batch
from svdiff.train_config import TrainConfig


@dataclass
class SubjectPixels:
    token: str
    class_word: str
    photos: torch.Tensor  # (n, 3, H, W) in [-1, 1]
    class_images: torch.Tensor | None  # (m, 3, H, W), None without prior preservation


def pick(images: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    """One random image of (n, 3, H, W), mirrored with probability 1/2 when `flip`."""
    index = int(torch.randint(images.shape[0], (), generator=generator))
    return random_flip(images[index : index + 1], generator, flip)[0]  # (3, H, W)


def _template(config: TrainConfig, generator: torch.Generator) -> str:
    """The instance prompt's phrasing for one sample; no draw (the paper's run, exactly) without extra templates."""
    if not config.prompt_templates:
        return config.subject_prompt
    templates = (config.subject_prompt, *config.prompt_templates)
    return templates[int(torch.randint(len(templates), (), generator=generator))]


def _phrasing(config: TrainConfig, generator: torch.Generator) -> tuple[str, str]:
    """A collage's (instance, prior) templates; no draw (the paper's run, exactly) without extra phrasings."""
    if not config.mix_phrasings:
        return config.mix_prompt, config.prior_mix_prompt
    phrasings = ((config.mix_prompt, config.prior_mix_prompt), *config.mix_phrasings)
    return phrasings[int(torch.randint(len(phrasings), (), generator=generator))]


def _instance(data: list[SubjectPixels], layout: tuple[int, ...], config: TrainConfig, phrasing: tuple[str, str],
              generator: torch.Generator) -> tuple[torch.Tensor, str, tuple[str, str] | None]:
    if len(layout) == 1:
        subject = data[layout[0]]
        prompt = subject_prompt(subject.token, subject.class_word, _template(config, generator))
        return pick(subject.photos, generator, config.flip), prompt, None
    left, right = data[layout[0]], data[layout[1]]
    # Each photo is flipped before it is cut, so a flip never moves a subject to the other side.
    pixels = collage(pick(left.photos, generator, config.flip), pick(right.photos, generator, config.flip),
                     config.collage_crop)
    prompt = mix_prompt((left.token, left.class_word), (right.token, right.class_word), phrasing[0])
    return pixels, prompt, (left.token, right.token)


def _prior(data: list[SubjectPixels], layout: tuple[int, ...], config: TrainConfig, phrasing: tuple[str, str],
           generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """The class-image counterpart of an instance layout: one class image, or a collage of two in the same
    phrasing."""
    sides = [data[i] for i in layout]
    images = []
    for subject in sides:
        assert subject.class_images is not None
        images.append(pick(subject.class_images, generator, config.flip))
    if len(sides) == 1:
        return images[0], config.class_prompt.format(class_word=sides[0].class_word)
    prompt = prior_mix_prompt(sides[0].class_word, sides[1].class_word, phrasing[1])
    return collage(images[0], images[1], config.collage_crop), prompt


def subject_batch(data: list[SubjectPixels], config: TrainConfig, generator: torch.Generator) -> Batch:
    """`batch_size` instance samples, then as many prior samples when prior preservation is on.

    Loss weights make the loss mean(instance MSE) + prior_weight * mean(prior MSE).
    """
    mixing = config.cut_mix_unmix and len(data) > 1
    pixels, prompts, pairs, weights = [], [], [], []
    priors: list[tuple[torch.Tensor, str]] = []
    for _ in range(config.batch_size):
        layout = draw_layout(len(data), config.mix_probability if mixing else 0.0, generator)
        phrasing = _phrasing(config, generator) if len(layout) == 2 else (config.mix_prompt, config.prior_mix_prompt)
        image, prompt, pair = _instance(data, layout, config, phrasing, generator)
        pixels.append(image)
        prompts.append(prompt)
        pairs.append(pair)
        weights.append(1.0 / config.batch_size)
        if config.prior_preservation:
            priors.append(_prior(data, layout, config, phrasing, generator))
    for image, prompt in priors:
        pixels.append(image)
        prompts.append(prompt)
        pairs.append(None)
        weights.append(config.prior_weight / config.batch_size)
    return Batch(torch.stack(pixels), prompts, torch.tensor(weights), pairs)


def single_image_batch(pixels: torch.Tensor, prompt: str) -> Batch:
    """The one-photo batch of single-image editing: the photo (1, 3, H, W) with the prompt that describes it."""
    return Batch(pixels, [prompt], torch.ones(1), [None])
