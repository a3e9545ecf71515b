"""Reading samples back with the attribute reader (basemodel.reader) and turning readings into rates.

A subject is "shown" when the reader finds the whole instance: its shape, colour and pattern and its instance
details (tone, outline, and the marks of a patterned subject): `basemodel.subjects.Subject.shown_by`. A sample
follows its prompt when, in addition, the background and the position are the prompted ones. Drift counts samples
of the bare class prompt that show the subject's combination (shape, colour and pattern, whatever the details):
a combination base training never drew, so the subject has leaked into its class. Side-by-side samples are read
with the reader's own count head: both subjects are there when it counts two objects, the left one reads as the
left subject and the right one as the right subject (shape, colour and pattern: the reader reads no details of
the halves of a pair), and no attribute of one subject shows up on the other's side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from basemodel.reader import AttributeReader, ObjectReading, Reading
from basemodel.subjects import Subject
from bench.quality.rates import Rate

ATTRIBUTES = ("shape", "colour", "pattern")


def shows_combination(obj: ObjectReading, subject: Subject) -> bool:
    return all(getattr(obj, kind) == getattr(subject, kind) for kind in ATTRIBUTES)


def leaks(obj: ObjectReading, own: Subject, other: Subject) -> bool:
    """An attribute of `other` on `own`'s object (attributes both subjects share do not count)."""
    return any(getattr(obj, kind) == getattr(other, kind) != getattr(own, kind) for kind in ATTRIBUTES)


@dataclass
class SingleScores:
    subject: Rate  # subject fidelity: the whole instance
    prompt: Rate  # the whole instance, and the prompted background and position
    background: Rate
    position: Rate
    combination: Rate  # shape, colour and pattern, whatever the details
    details: Rate  # the subject's instance details, whatever the rest


@dataclass
class PairScores:
    both: Rate  # two objects, each the right subject intact, nothing of one on the other
    two: Rate  # the reader counts two objects
    left: Rate  # the left object is the left subject, intact
    right: Rate
    leak: Rate  # an attribute of one subject on the other's object


def read_single(reader: AttributeReader, images: Sequence[Image.Image]) -> list[ObjectReading]:
    return [reading.objects[0] for reading in reader.read(list(images), layout="single")]


def _details(obj: ObjectReading, subject: Subject) -> bool:
    return all(getattr(obj, kind) == value for kind, value in subject.details.items())


def score_context(reader: AttributeReader, images: Sequence[Image.Image], subject: Subject,
                  backgrounds: Sequence[str], positions: Sequence[str]) -> SingleScores:
    """`backgrounds[i]` and `positions[i]` are what image i's prompt asked for."""
    readings = reader.read(list(images), layout="single")
    objects = [r.objects[0] for r in readings]
    hit = [subject.shown_by(o) for o in objects]
    bg = [r.background == b for r, b in zip(readings, backgrounds, strict=True)]
    pos = [o.position == p for o, p in zip(objects, positions, strict=True)]
    return SingleScores(
        subject=Rate.of(hit),
        prompt=Rate.of(h and b and p for h, b, p in zip(hit, bg, pos, strict=True)),
        background=Rate.of(bg),
        position=Rate.of(pos),
        combination=Rate.of(shows_combination(o, subject) for o in objects),
        details=Rate.of(_details(o, subject) for o in objects),
    )


def score_drift(reader: AttributeReader, images: Sequence[Image.Image], subject: Subject) -> Rate:
    return Rate.of(shows_combination(o, subject) for o in read_single(reader, images))


def score_shown(reader: AttributeReader, images: Sequence[Image.Image], subject: Subject) -> Rate:
    return Rate.of(subject.shown_by(o) for o in read_single(reader, images))


def pair_flags(reading: Reading, left: Subject, right: Subject) -> dict[str, bool]:
    if len(reading.objects) != 2:
        return {"both": False, "two": False, "left": False, "right": False, "leak": False}
    lo, ro = reading.objects
    flags = {"two": True, "left": shows_combination(lo, left), "right": shows_combination(ro, right),
             "leak": leaks(lo, left, right) or leaks(ro, right, left)}
    flags["both"] = flags["left"] and flags["right"] and not flags["leak"]
    return flags


def score_pairs(reader: AttributeReader, images: Sequence[Image.Image],
                sides: Sequence[tuple[Subject, Subject]]) -> PairScores:
    """`sides[i]` is the (left, right) subjects image i's prompt asked for."""
    readings = reader.read(list(images), layout="auto")
    flags = [pair_flags(r, left, right) for r, (left, right) in zip(readings, sides, strict=True)]
    return PairScores(**{key: Rate.of(f[key] for f in flags) for key in ("both", "two", "left", "right", "leak")})
