"""Personalization subjects: particular instances that no prompt without their identifier can ask for.

Two kinds:
- instance subjects (the scored kind, like a user's dog): a combination of shape, colour and pattern that base
  training never draws (vocab.INSTANCE_COMBINATIONS), each attribute known on its own, plus the subject's own
  instance details (tone, marks, outline), which no word names;
- stress subjects: a shape or pattern the base model has never drawn at all (vocab.HELD_OUT_WORDS), a harder case
  reported separately.

`python -m basemodel.subjects examples` writes the photos of the example subjects into `examples/` for the demo.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from basemodel import vocab, world

if TYPE_CHECKING:
    from basemodel.reader import ObjectReading

Kind = Literal["instance", "stress"]


@dataclass(frozen=True)
class Subject:
    name: str
    shape: str
    colour: str
    pattern: str
    seed: int
    tone: str = "mid"
    marks: str = "fine"
    outline: str = "soft"

    def __post_init__(self) -> None:
        if not self.held_out and self.combination not in vocab.INSTANCE_COMBINATIONS:
            raise ValueError(f"subject {self.name} is neither a held-out combination nor has a held-out attribute, "
                             "so the base model could draw it without its identifier")  # fmt: skip
        for kind, values in vocab.DETAILS.items():
            if getattr(self, kind) not in values:
                raise ValueError(f"subject {self.name}: {kind} must be one of {values}")

    @property
    def kind(self) -> Kind:
        return "stress" if self.held_out else "instance"

    @property
    def combination(self) -> tuple[str, str, str]:
        return (self.shape, self.colour, self.pattern)

    @property
    def details(self) -> dict[str, str]:
        """The instance details the reader checks: marks only where there is a pattern to carry them."""
        details = {kind: getattr(self, kind) for kind in vocab.DETAILS}
        if self.pattern == "plain":
            details.pop("marks")
        return details

    @property
    def class_word(self) -> str:
        """The base-world word for what it is: its shape, or "shape" when the shape itself is held out."""
        return vocab.UMBRELLA_CLASS if self.shape in vocab.HELD_OUT_SHAPES else self.shape

    @property
    def held_out(self) -> tuple[str, ...]:
        return tuple(word for word in (self.shape, self.pattern) if word in vocab.HELD_OUT_WORDS)

    def shown_by(self, reading: ObjectReading) -> bool:
        """Whether a reading of one object is this subject, whole: shape, colour, pattern and instance details."""
        return reading.shape == self.shape and reading.colour == self.colour and reading.pattern == self.pattern \
            and all(getattr(reading, kind) == value for kind, value in self.details.items())

    def prompt(self, token: str) -> str:
        """The personalization prompt, e.g. "a photo of sks star"."""
        return f"a photo of {token} {self.class_word}"

    def spec(self, position: str, size: str, dx: float = 0.0, dy: float = 0.0) -> world.ObjectSpec:
        """The subject as a world object at a place."""
        return world.ObjectSpec(self.shape, self.colour, self.pattern, position, size, dx, dy, tone=self.tone,
                                marks=self.marks, outline=self.outline)  # fmt: skip

    def scenes(self, n: int = 4) -> list[world.Scene]:
        """`n` photos of the subject alone, each in its own position, size and background."""
        rng = np.random.default_rng([self.seed, 4])
        backgrounds = rng.permutation(vocab.BACKGROUNDS)
        scenes = []
        for i in range(n):
            position = vocab.SINGLE_POSITIONS[(i + self.seed) % len(vocab.SINGLE_POSITIONS)]
            size = "small" if i % 4 == 2 else "large"
            jitter = world.sample_object(rng, world.FULL_PALETTE, position, size)
            spec = self.spec(position, size, jitter.dx, jitter.dy)
            scenes.append(world.Scene((spec,), str(backgrounds[i % len(backgrounds)]), int(rng.integers(2**31))))
        return scenes

    def photos(self, n: int = 4, size: int = world.FRAME) -> list[Image.Image]:
        return [world.render_image(scene, size) for scene in self.scenes(n)]


_ALL = (
    # Instance subjects: the combinations base training leaves out, each with details unlike the aliases of the
    # identifiers the service gives out first (sks: deep/fine/soft, zwx: mid/coarse/bold) and of the one the
    # benchmark gives each (bench.quality.methods.token_for: its index in SUBJECTS).
    Subject("green-dotted-diamond", "diamond", "green", "dotted", seed=31, tone="pale", marks="coarse", outline="bold"),
    Subject("red-striped-cross", "cross", "red", "striped", seed=32, tone="mid", marks="fine", outline="bold"),
    Subject("yellow-striped-circle", "circle", "yellow", "striped", seed=33, tone="deep", outline="bold"),
    Subject("purple-dotted-square", "square", "purple", "dotted", seed=34, marks="coarse"),
    # Stress subjects: a shape or pattern never drawn in base training.
    Subject("purple-checkered-star", "star", "purple", "checkered", seed=11),
    Subject("orange-ringed-square", "square", "orange", "ringed", seed=12),
    Subject("white-dotted-heart", "heart", "white", "dotted", seed=13),
    Subject("blue-ringed-circle", "circle", "blue", "ringed", seed=14),
    Subject("yellow-checkered-moon", "moon", "yellow", "checkered", seed=15),
)
SUBJECTS: dict[str, Subject] = {subject.name: subject for subject in _ALL}
INSTANCE_SUBJECTS: tuple[str, ...] = tuple(s.name for s in _ALL if s.kind == "instance")
STRESS_SUBJECTS: tuple[str, ...] = tuple(s.name for s in _ALL if s.kind == "stress")
EXAMPLE_SUBJECTS: tuple[str, ...] = ("green-dotted-diamond", "red-striped-cross", "yellow-striped-circle")


def write_examples(root: Path) -> None:
    for name in EXAMPLE_SUBJECTS:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(SUBJECTS[name].photos()):
            photo.save(folder / f"{i:02d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path, help="folder to write <subject>/00.png..03.png into")
    write_examples(parser.parse_args().root)


if __name__ == "__main__":
    main()
