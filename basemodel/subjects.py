"""Personalization subjects: fixed objects the base model cannot draw, each with a held-out shape or pattern.

`python -m basemodel.subjects examples` writes the photos of the first three into `examples/` for the demo.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from basemodel import vocab, world


@dataclass(frozen=True)
class Subject:
    name: str
    shape: str
    colour: str
    pattern: str
    seed: int
    control: bool = False  # a diagnostic subject made of base attributes only, which the base model can draw

    def __post_init__(self) -> None:
        if not self.control and not {self.shape, self.pattern} & vocab.HELD_OUT_WORDS:
            raise ValueError(f"subject {self.name} has no held-out attribute, so the base model could draw it")

    @property
    def class_word(self) -> str:
        """The base-world word for what it is: its shape, or "shape" when the shape itself is held out."""
        return vocab.UMBRELLA_CLASS if self.shape in vocab.HELD_OUT_SHAPES else self.shape

    @property
    def held_out(self) -> tuple[str, ...]:
        return tuple(word for word in (self.shape, self.pattern) if word in vocab.HELD_OUT_WORDS)

    def prompt(self, token: str) -> str:
        """The personalization prompt, e.g. "a photo of sks star"."""
        return f"a photo of {token} {self.class_word}"

    def scenes(self, n: int = 4) -> list[world.Scene]:
        """`n` photos of the subject alone, each in its own position, size and background."""
        rng = np.random.default_rng([self.seed, 4])
        backgrounds = rng.permutation(vocab.BACKGROUNDS)
        scenes = []
        for i in range(n):
            position = vocab.SINGLE_POSITIONS[(i + self.seed) % len(vocab.SINGLE_POSITIONS)]
            size = "small" if i % 4 == 2 else "large"
            spec = world.sample_object(rng, world.FULL_PALETTE, position, size)
            spec = world.ObjectSpec(self.shape, self.colour, self.pattern, position, size, spec.dx, spec.dy)
            scenes.append(world.Scene((spec,), str(backgrounds[i % len(backgrounds)]), int(rng.integers(2**31))))
        return scenes

    def photos(self, n: int = 4, size: int = world.FRAME) -> list[Image.Image]:
        return [world.render_image(scene, size) for scene in self.scenes(n)]


SUBJECTS: dict[str, Subject] = {
    subject.name: subject
    for subject in (
        Subject("purple-checkered-star", "star", "purple", "checkered", seed=11),
        Subject("orange-ringed-square", "square", "orange", "ringed", seed=12),
        Subject("white-dotted-heart", "heart", "white", "dotted", seed=13),
        Subject("blue-ringed-circle", "circle", "blue", "ringed", seed=14),
        Subject("yellow-checkered-moon", "moon", "yellow", "checkered", seed=15),
    )
}
# Controls for the quality benchmark's diagnostics: what a method learns when nothing about the subject is new.
_CONTROL = Subject("pink-striped-triangle", "triangle", "pink", "striped", seed=21, control=True)
CONTROL_SUBJECTS: dict[str, Subject] = {_CONTROL.name: _CONTROL}
EXAMPLE_SUBJECTS: tuple[str, ...] = ("purple-checkered-star", "orange-ringed-square", "white-dotted-heart")


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
