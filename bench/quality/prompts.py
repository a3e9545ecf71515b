"""Evaluation prompts, in the world's own caption grammar (basemodel.world.caption), fixed in code.

- Context prompts put "a <token> <class>" at each position on each background that none of its training photos
  shows: "a sks star on the left, on a water background".
- The drift prompt is the bare class on grass: "a star on a grass background".
- Side-by-side prompts: the training collages' order ("a <t1> <c1> on the left and a <t2> <c2> on the right, on a
  <bg> background"), and the world's swapped phrasing, which training never uses ("a <t1> <c1> on the right and a
  <t2> <c2> on the left, ..."), with the sides exchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from basemodel import vocab
from basemodel.subjects import Subject

_POSITION_PHRASE = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
DRIFT_BACKGROUND = "grass"
PAIR_BACKGROUNDS = ("sand", "water")


@dataclass(frozen=True)
class ContextPrompt:
    text: str
    background: str
    position: str


@dataclass(frozen=True)
class PairPrompt:
    text: str
    left: str  # subject names
    right: str
    background: str
    phrasing: str  # "training order" or "swapped"


def unseen_backgrounds(subject: Subject, photos: int) -> list[str]:
    seen = {scene.background for scene in subject.scenes(photos)}
    return [bg for bg in vocab.BACKGROUNDS if bg not in seen]


def context_prompts(subject: Subject, token: str, photos: int) -> list[ContextPrompt]:
    return [ContextPrompt(f"a {token} {subject.class_word} {_POSITION_PHRASE[position]}, on a {bg} background",
                          bg, position)
            for bg in unseen_backgrounds(subject, photos) for position in vocab.SINGLE_POSITIONS]


def drift_prompt(subject: Subject) -> str:
    return f"a {subject.class_word} on a {DRIFT_BACKGROUND} background"


def pair_prompts(first: tuple[Subject, str], second: tuple[Subject, str]) -> list[PairPrompt]:
    """(subject, token) pairs; the first is on the left in the training-order prompt, on the right in the other."""
    (s1, t1), (s2, t2) = first, second
    bg_a, bg_b = PAIR_BACKGROUNDS
    return [
        PairPrompt(f"a {t1} {s1.class_word} on the left and a {t2} {s2.class_word} on the right, on a {bg_a} "
                   "background", s1.name, s2.name, bg_a, "training order"),
        PairPrompt(f"a {t1} {s1.class_word} on the right and a {t2} {s2.class_word} on the left, on a {bg_b} "
                   "background", s2.name, s1.name, bg_b, "swapped"),
    ]
