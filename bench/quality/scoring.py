"""Reading samples back with the attribute reader (basemodel.reader) and turning readings into rates.

A subject is "shown" when the reader finds its shape, colour and pattern (all three); a sample follows its prompt
when, in addition, the background and the position are the prompted ones. Side-by-side samples are read with the
reader's own count head: both subjects are there when it counts two objects, the left one reads as the left
subject and the right one as the right subject, and no attribute of one subject shows up on the other's side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from basemodel.reader import AttributeReader, ObjectReading, Reading
from basemodel.subjects import Subject

ATTRIBUTES = ("shape", "colour", "pattern")


def shows(obj: ObjectReading, subject: Subject) -> bool:
    return all(getattr(obj, kind) == getattr(subject, kind) for kind in ATTRIBUTES)


def shows_held_out(obj: ObjectReading, subject: Subject) -> bool:
    """Whether any of the subject's held-out attributes (its new shape or pattern) appears."""
    return any(getattr(obj, kind) == getattr(subject, kind) for kind in ("shape", "pattern")
               if getattr(subject, kind) in subject.held_out)


def leaks(obj: ObjectReading, own: Subject, other: Subject) -> bool:
    """An attribute of `other` on `own`'s object (attributes both subjects share do not count)."""
    return any(getattr(obj, kind) == getattr(other, kind) != getattr(own, kind) for kind in ATTRIBUTES)


@dataclass
class SingleScores:
    n: int
    subject: float  # subject fidelity
    prompt: float  # subject fidelity and the prompted background and position
    background: float
    position: float
    shape: float = 0.0  # each of the subject's attributes on its own
    colour: float = 0.0
    pattern: float = 0.0

    @property
    def attributes(self) -> float:
        """The mean of the three one-attribute rates: a graded signal where whole-subject fidelity is all zeros."""
        return (self.shape + self.colour + self.pattern) / 3


@dataclass
class DriftScores:
    n: int
    subject: float  # samples of the bare class that show the subject (all attributes)
    held_out: float  # samples that show any held-out attribute of the subject


@dataclass
class PairScores:
    n: int
    both: float  # two objects, each the right subject intact, nothing of one on the other
    two: float  # the reader counts two objects
    left: float  # the left object is the left subject, intact
    right: float
    leak: float  # an attribute of one subject on the other's object


def read_single(reader: AttributeReader, images: Sequence[Image.Image]) -> list[ObjectReading]:
    return [reading.objects[0] for reading in reader.read(list(images), layout="single")]


def score_context(reader: AttributeReader, images: Sequence[Image.Image], subject: Subject,
                  backgrounds: Sequence[str], positions: Sequence[str]) -> SingleScores:
    """`backgrounds[i]` and `positions[i]` are what image i's prompt asked for."""
    readings = reader.read(list(images), layout="single")
    hit = np.array([shows(r.objects[0], subject) for r in readings])
    bg = np.array([r.background == b for r, b in zip(readings, backgrounds, strict=True)])
    pos = np.array([r.objects[0].position == p for r, p in zip(readings, positions, strict=True)])
    each = {kind: float(np.mean([getattr(r.objects[0], kind) == getattr(subject, kind) for r in readings]))
            for kind in ATTRIBUTES}
    return SingleScores(len(readings), float(hit.mean()), float((hit & bg & pos).mean()), float(bg.mean()),
                        float(pos.mean()), **each)


def score_drift(reader: AttributeReader, images: Sequence[Image.Image], subject: Subject) -> DriftScores:
    objects = read_single(reader, images)
    return DriftScores(len(objects), float(np.mean([shows(o, subject) for o in objects])),
                       float(np.mean([shows_held_out(o, subject) for o in objects])))


def pair_flags(reading: Reading, left: Subject, right: Subject) -> dict[str, bool]:
    if len(reading.objects) != 2:
        return {"both": False, "two": False, "left": False, "right": False, "leak": False}
    lo, ro = reading.objects
    flags = {"two": True, "left": shows(lo, left), "right": shows(ro, right),
             "leak": leaks(lo, left, right) or leaks(ro, right, left)}
    flags["both"] = flags["left"] and flags["right"] and not flags["leak"]
    return flags


def score_pairs(reader: AttributeReader, images: Sequence[Image.Image],
                sides: Sequence[tuple[Subject, Subject]]) -> PairScores:
    """`sides[i]` is the (left, right) subjects image i's prompt asked for."""
    readings = reader.read(list(images), layout="auto")
    flags = [pair_flags(r, left, right) for r, (left, right) in zip(readings, sides, strict=True)]
    rate = {key: float(np.mean([f[key] for f in flags])) for key in ("both", "two", "left", "right", "leak")}
    return PairScores(len(flags), **rate)
