"""The demo's subjects (the folders of `examples/`) and the new scenes it asks for, in the bundled base model's
own words: backgrounds and positions of its procedural world, said as its captions say them (`basemodel.world`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from basemodel.subjects import SUBJECTS
from basemodel.vocab import BACKGROUNDS, SINGLE_POSITIONS
from basemodel.world import article

POSITION_PHRASE = {"left": "on the left", "centre": "in the centre", "right": "on the right"}


@dataclass(frozen=True)
class ExampleSubject:
    name: str  # the folder's name, e.g. "green-dotted-diamond"
    class_word: str  # what it is, in words the base model knows
    photos: list[Path]


def class_word_of(name: str) -> str:
    """The class word of a subject of the procedural world (examples/README.md), else the folder name's last word."""
    return SUBJECTS[name].class_word if name in SUBJECTS else name.rsplit("-", 1)[-1]


def find_examples(root: Path) -> list[ExampleSubject]:
    """Every folder of `root` holding PNG photos, in name order."""
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.png"))
        if photos:
            subjects.append(ExampleSubject(folder.name, class_word_of(folder.name), photos))
    if not subjects:
        raise FileNotFoundError(f"no example photos (*.png) in the folders of {root}")
    return subjects


def scene_prompts(token: str, class_word: str, count: int, offset: int = 0) -> list[str]:
    """`count` prompts placing the subject somewhere new: each a position and a background of the world."""
    prompts = []
    for i in range(count):
        position = SINGLE_POSITIONS[(i + offset) % len(SINGLE_POSITIONS)]
        background = BACKGROUNDS[(i + 2 * offset) % len(BACKGROUNDS)]
        prompts.append(f"a photo of {_named(token, class_word)} {POSITION_PHRASE[position]}, "
                       f"on a {background} background")
    return prompts


def pair_prompt(left: tuple[str, str], right: tuple[str, str], background: str) -> str:
    """Two subjects in one image, each (token, class word), as the world's two-object captions say it."""
    return f"a photo of {_named(*left)} on the left and {_named(*right)} on the right, on a {background} background"


def _named(token: str, class_word: str) -> str:
    """A subject as a caption names an object with an identifier: article, identifier, class word."""
    return f"{article(token)} {token} {class_word}"
