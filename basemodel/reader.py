"""The attribute reader: a small CNN that reads a world image back into its attributes.

It reads the background, how many objects there are, the single object's shape, colour, pattern, position and
size and instance details (tone, marks, outline), and, for two-object images, the shape, colour and pattern of the
object in each half. The benchmarks use it to score samples of the base model and of personalized models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from basemodel import READER_PATH, vocab
from basemodel.data import to_tensor
from basemodel.world import FRAME, Scene

Layout = Literal["auto", "single", "pair"]

# Each head and the labels it chooses among; "single_*" heads are trained on one-object images only, "left_*" and
# "right_*" on two-object images only.
HEADS: dict[str, tuple[str, ...]] = {
    "count": ("one", "two"),
    "background": vocab.BACKGROUNDS,
    "single_shape": vocab.SHAPES,
    "single_colour": vocab.COLOURS,
    "single_pattern": vocab.PATTERNS,
    "single_position": vocab.SINGLE_POSITIONS,
    "single_size": vocab.SIZES,
    "single_tone": vocab.TONES,
    "single_marks": vocab.MARKS,  # patterned objects only
    "single_outline": vocab.OUTLINES,
    "left_shape": vocab.SHAPES,
    "left_colour": vocab.COLOURS,
    "left_pattern": vocab.PATTERNS,
    "right_shape": vocab.SHAPES,
    "right_colour": vocab.COLOURS,
    "right_pattern": vocab.PATTERNS,
}


@dataclass(frozen=True)
class ObjectReading:
    shape: str
    colour: str
    pattern: str
    position: str
    size: str | None = None  # read for single objects only, as are the details below
    tone: str | None = None
    marks: str | None = None  # None for a plain object too: it has no marks
    outline: str | None = None

    @property
    def details(self) -> dict[str, str | None]:
        return {kind: getattr(self, kind) for kind in vocab.DETAILS}


@dataclass(frozen=True)
class Reading:
    background: str
    objects: tuple[ObjectReading, ...]  # one object, or (left, right)


def scene_labels(scene: Scene) -> dict[str, int]:
    """The index each applicable head should output for a scene."""
    labels = {"count": len(scene.objects) - 1, "background": vocab.BACKGROUNDS.index(scene.background)}
    prefixes = ("single",) if len(scene.objects) == 1 else ("left", "right")
    for prefix, spec in zip(prefixes, scene.objects, strict=True):
        labels[f"{prefix}_shape"] = vocab.SHAPES.index(spec.shape)
        labels[f"{prefix}_colour"] = vocab.COLOURS.index(spec.colour)
        labels[f"{prefix}_pattern"] = vocab.PATTERNS.index(spec.pattern)
    if len(scene.objects) == 1:
        (spec,) = scene.objects
        labels["single_position"] = vocab.SINGLE_POSITIONS.index(spec.position)
        labels["single_size"] = vocab.SIZES.index(spec.size)
        for kind, values in vocab.DETAILS.items():
            if kind != "marks" or spec.pattern != "plain":
                labels[f"single_{kind}"] = values.index(getattr(spec, kind))
    return labels


def scene_reading(scene: Scene) -> Reading:
    """What a perfect reader would return for a scene."""
    if len(scene.objects) == 1:
        (spec,) = scene.objects
        marks = None if spec.pattern == "plain" else spec.marks
        single = ObjectReading(spec.shape, spec.colour, spec.pattern, spec.position, spec.size, spec.tone, marks,
                               spec.outline)  # fmt: skip
        return Reading(scene.background, (single,))
    return Reading(scene.background, tuple(ObjectReading(spec.shape, spec.colour, spec.pattern, spec.position)
                                           for spec in scene.objects))  # fmt: skip


def _block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class AttributeReader(nn.Module):
    def __init__(self, width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.config = {"width": width, "hidden": hidden}
        self.features = nn.Sequential(
            _block(3, width, 4, 2),  # (B, w, 32, 32)
            _block(width, 2 * width, 3, 2),  # (B, 2w, 16, 16)
            _block(2 * width, 2 * width, 3, 1),
            _block(2 * width, 4 * width, 3, 2),  # (B, 4w, 8, 8)
            _block(4 * width, 4 * width, 3, 1),
            _block(4 * width, width, 1, 1),  # (B, w, 8, 8)
        )
        # Flattened, not pooled: where things are (left, centre, right, each half) is part of what it reads.
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(width * 64, hidden), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, len(labels)) for name, labels in HEADS.items()})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, 64, 64) in [-1, 1] -> logits per head, (B, n_labels)."""
        hidden = self.trunk(self.features(images))
        return {name: head(hidden) for name, head in self.heads.items()}

    def save(self, path: Path = READER_PATH) -> None:
        path.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.half() if tensor.is_floating_point() else tensor
                 for name, tensor in self.state_dict().items()}  # fmt: skip
        save_file(state, path / "model.safetensors")
        (path / "config.json").write_text(json.dumps({**self.config, "heads": HEADS}, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path = READER_PATH) -> AttributeReader:
        config = json.loads((path / "config.json").read_text())
        if {name: tuple(labels) for name, labels in config.pop("heads").items()} != HEADS:
            raise ValueError(f"reader at {path} was trained for other labels than this code's vocabulary")
        reader = cls(**config)
        reader.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                                for name, tensor in load_file(path / "model.safetensors").items()})  # fmt: skip
        return reader.eval()

    @torch.no_grad()
    def read(self, images: list[Image.Image | np.ndarray], layout: Layout = "auto") -> list[Reading]:
        """Read images; `layout` forces one object or a (left, right) pair instead of trusting the count head."""
        arrays = [np.asarray(_as_frame(image)) for image in images]
        logits = self.eval()(to_tensor(arrays))
        best = {name: values.argmax(dim=1).tolist() for name, values in logits.items()}
        readings = []
        for i in range(len(arrays)):
            label = {name: HEADS[name][indices[i]] for name, indices in best.items()}
            if layout == "pair" or (layout == "auto" and label["count"] == "two"):
                objects = tuple(_object(label, side, side) for side in vocab.PAIR_POSITIONS)
            else:
                marks = None if label["single_pattern"] == "plain" else label["single_marks"]
                objects = (ObjectReading(label["single_shape"], label["single_colour"], label["single_pattern"],
                                         label["single_position"], label["single_size"], label["single_tone"], marks,
                                         label["single_outline"]),)  # fmt: skip
            readings.append(Reading(label["background"], objects))
        return readings


def _object(label: dict[str, str], prefix: str, position: str) -> ObjectReading:
    shape, colour, pattern = (label[f"{prefix}_{kind}"] for kind in ("shape", "colour", "pattern"))
    return ObjectReading(shape, colour, pattern, position)


def _as_frame(image: Image.Image | np.ndarray) -> Image.Image:
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture = picture.convert("RGB")
    return picture if picture.size == (FRAME, FRAME) else picture.resize((FRAME, FRAME), Image.Resampling.BILINEAR)


def load_reader(path: Path = READER_PATH) -> AttributeReader:
    return AttributeReader.load(path)
