"""How often the demo's single-subject images show their subject whole, by the attribute reader's account:
shape, colour, pattern and the subject's own details (`basemodel.subjects.Subject.shown_by`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from basemodel.subjects import SUBJECTS

if TYPE_CHECKING:
    from basemodel.reader import AttributeReader


@dataclass(frozen=True)
class Fidelity:
    found: int  # images in which the reader finds the whole subject
    n: int  # images of known subjects

    @property
    def rate(self) -> float:
        return self.found / self.n if self.n else float("nan")

    def line(self) -> str:
        return f"demo-quality: subject fidelity {self.rate:.3f} over {self.n} images"


def subject_fidelity(images: Sequence[tuple[str, Image.Image]], reader: AttributeReader | None = None) -> Fidelity:
    """`images`: (subject folder name, image) of one subject each; a folder that is no subject of the procedural
    world has nothing to check its images against, so they do not count."""
    known = [(SUBJECTS[name], image) for name, image in images if name in SUBJECTS]
    if not known:
        return Fidelity(found=0, n=0)
    if reader is None:
        from basemodel.reader import load_reader  # torch, loaded only when there is something to read

        reader = load_reader()
    readings = reader.read([image for _, image in known], layout="single")
    found = sum(subject.shown_by(reading.objects[0]) for (subject, _), reading in zip(known, readings, strict=True))
    return Fidelity(found=found, n=len(known))
