"""How much a word moves the text encoder's output: identifiers against attribute words.

A word the encoder treats as filler leaves the states after it (the class word, end-of-text and padding positions,
which carry most of the condition) where they were; an attribute word moves them. Each word replaces the article in
`a photo of a <shape>` (and the same with a background), and the mean L2 change of the final states at every
position after it is that word's visibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import CLIPTextModel, CLIPTokenizer

from basemodel import vocab

_TEMPLATES: tuple[str, ...] = ("a photo of {word} {shape}", "a photo of {word} {shape} on a {background} background")
_ARTICLE = "a"
ATTRIBUTE_WORDS: tuple[str, ...] = vocab.COLOURS + vocab.BASE_PATTERNS


def _prompts(word: str) -> list[str]:
    return [template.format(word=word, shape=shape, background=background)
            for template in _TEMPLATES for shape in vocab.BASE_SHAPES for background in vocab.BACKGROUNDS
            if "{background}" in template or background == vocab.BACKGROUNDS[0]]  # fmt: skip


@torch.no_grad()
def word_visibility(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, word: str) -> float:
    """Mean L2 change of the final states after `word`, against the same prompts with the article in its place."""
    slot = len(tokenizer("a photo of", add_special_tokens=False).input_ids) + 1  # after the start token

    def states(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt").input_ids
        return text_encoder.eval()(ids)[0]  # (n, max_length, width)

    changed, baseline = states(_prompts(word)), states(_prompts(_ARTICLE))
    return (changed - baseline)[:, slot + 1 :].norm(dim=-1).mean().item()


@dataclass(frozen=True)
class Visibility:
    identifiers: dict[str, float]
    attributes: dict[str, float]

    @property
    def ratio(self) -> float:
        """The identifiers' mean visibility over the attribute words' mean: 1 moves the output as an attribute does."""
        return float(np.mean(list(self.identifiers.values())) / np.mean(list(self.attributes.values())))


def token_visibility(text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer) -> Visibility:
    return Visibility(
        identifiers={word: word_visibility(text_encoder, tokenizer, word) for word in vocab.RESERVED_TOKENS},
        attributes={word: word_visibility(text_encoder, tokenizer, word) for word in ATTRIBUTE_WORDS},
    )
