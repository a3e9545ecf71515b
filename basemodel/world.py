"""The procedural world: scenes of one or two patterned shapes on a background, their renders and captions.

Everything is a pure function of a `numpy.random.Generator` (or a seed), so a seed names an image exactly.
Coordinates are in a 64-pixel frame and scaled for larger renders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from basemodel import vocab

FRAME = 64
_SUPERSAMPLE = 2

COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (245, 225, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "purple": (140, 50, 200),
    "pink": (250, 130, 190),
    "white": (245, 245, 245),
}
# Pattern marks are a darker shade of the object's own colour, so the colour stays readable on any pattern.
_PATTERN_SHADE = 0.4
# Outline: how many pixels of the shape's rim are darkened, and to what share of the fill.
_OUTLINE = {"soft": (1, 0.5), "bold": (3, 0.3)}
_DEEP, _PALE = 0.7, 0.45  # deep: the colour darkened by this factor; pale: this share of white mixed in
# White cannot be paler; its pale tone is a warm cream instead.
_WHITE_PALE = (250, 232, 190)


def object_rgb(colour: str, tone: str) -> np.ndarray:
    """The fill of an object: its colour word's RGB in one of the tones."""
    rgb = np.array(COLOUR_RGB[colour], dtype=np.float32)
    if tone == "deep":
        return rgb * _DEEP
    if tone == "pale":
        if colour == "white":
            return np.array(_WHITE_PALE, dtype=np.float32)
        return rgb * (1.0 - _PALE) + 255.0 * _PALE
    if tone != "mid":
        raise ValueError(f"unknown tone {tone!r}")
    return rgb


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str
    pattern: str
    position: str  # "left" | "centre" | "right"
    size: str  # "small" | "large"
    dx: float = 0.0  # jitter of the centre, in frame pixels
    dy: float = 0.0
    # Instance details (vocab.DETAILS): no caption word names them.
    tone: str = "mid"
    marks: str = "fine"
    outline: str = "soft"

    def with_details(self, **details: str) -> ObjectSpec:
        return replace(self, **details)

    @property
    def details(self) -> dict[str, str]:
        return {kind: getattr(self, kind) for kind in vocab.DETAILS}


@dataclass(frozen=True)
class Scene:
    objects: tuple[ObjectSpec, ...]
    background: str
    texture_seed: int = 0


@dataclass(frozen=True)
class Palette:
    """Which attribute values a sampler may draw: the base palette excludes the held-out ones."""

    shapes: tuple[str, ...]
    patterns: tuple[str, ...]
    colours: tuple[str, ...] = vocab.COLOURS
    backgrounds: tuple[str, ...] = vocab.BACKGROUNDS
    # (shape, colour, pattern) combinations never drawn: the instance subjects', which only an identifier may ask for.
    excluded: frozenset[tuple[str, str, str]] = frozenset()


BASE_PALETTE = Palette(shapes=vocab.BASE_SHAPES, patterns=vocab.BASE_PATTERNS, excluded=vocab.INSTANCE_COMBINATIONS)
FULL_PALETTE = Palette(shapes=vocab.SHAPES, patterns=vocab.PATTERNS)

PAIR_PROBABILITY = 0.4


def _geometry(spec: ObjectSpec, n_objects: int) -> tuple[float, float, float]:
    """Centre x, centre y and radius of an object, in frame pixels."""
    if n_objects == 2:
        cx = {"left": 16.0, "right": 48.0}[spec.position]
        radius = 13.0
    else:
        radius = {"small": 12.0, "large": 18.0}[spec.size]
        offset = {"small": 16.0, "large": 13.0}[spec.size]
        cx = 32.0 + {"left": -offset, "centre": 0.0, "right": offset}[spec.position]
    return cx + spec.dx, 32.0 + spec.dy, radius


def sample_object(rng: np.random.Generator, palette: Palette, position: str, size: str) -> ObjectSpec:
    jitter_y = 3.0 if size == "large" else 7.0
    while True:
        kind = (str(rng.choice(palette.shapes)), str(rng.choice(palette.colours)), str(rng.choice(palette.patterns)))
        if kind not in palette.excluded:
            break
    return ObjectSpec(
        *kind,
        position=position,
        size=size,
        dx=float(rng.uniform(-2.0, 2.0)),
        dy=float(rng.uniform(-jitter_y, jitter_y)),
        **{detail: str(rng.choice(values)) for detail, values in vocab.DETAILS.items()},
    )


def sample_scene(rng: np.random.Generator, palette: Palette = BASE_PALETTE) -> Scene:
    if rng.random() < PAIR_PROBABILITY:
        objects = tuple(sample_object(rng, palette, side, "small") for side in vocab.PAIR_POSITIONS)
    else:
        position = str(rng.choice(vocab.SINGLE_POSITIONS))
        objects = (sample_object(rng, palette, position, str(rng.choice(vocab.SIZES))),)
    return Scene(objects, str(rng.choice(palette.backgrounds)), int(rng.integers(2**31)))


# ---------------------------------------------------------------------------------------------- shapes


def _star(points: int, inner: float) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return list(zip(radii * np.cos(angles), radii * np.sin(angles), strict=True))


def _heart() -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return list(zip(x / 17.0, (y + 2.5) / 17.0, strict=True))


_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star(5, 0.45),
    "cross": [
        (-0.33, -1.0), (0.33, -1.0), (0.33, -0.33), (1.0, -0.33), (1.0, 0.33), (0.33, 0.33),
        (0.33, 1.0), (-0.33, 1.0), (-0.33, 0.33), (-1.0, 0.33), (-1.0, -0.33), (-0.33, -0.33),
    ],
    "diamond": [(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)],
    "heart": _heart(),
}  # fmt: skip


def shape_mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape, (size, size) float32; cx, cy, radius in output pixels."""
    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    s = _SUPERSAMPLE

    def box(x: float, y: float, r: float) -> tuple[float, float, float, float]:
        return ((x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s)

    if shape == "circle":
        draw.ellipse(box(cx, cy, radius), fill=255)
    elif shape == "moon":
        draw.ellipse(box(cx, cy, radius), fill=255)
        draw.ellipse(box(cx + 0.45 * radius, cy - 0.2 * radius, 0.85 * radius), fill=0)
    else:
        draw.polygon([((cx + radius * x) * s, (cy + radius * y) * s) for x, y in _POLYGONS[shape]], fill=255)
    coverage = np.asarray(canvas, dtype=np.float32).reshape(size, s, size, s).mean(axis=(1, 3))
    return coverage / 255.0


# -------------------------------------------------------------------------------------------- patterns


# Per pattern and marks: (period, mark width or dot radius), in frame pixels. Nothing finer than a 6-pixel period:
# 4-pixel cells alternate every latent pixel and blur to streaks in the autoencoder.
_MARK_GEOMETRY: dict[str, dict[str, tuple[float, float]]] = {
    "striped": {"fine": (6.0, 2.5), "coarse": (10.0, 4.5)},
    "dotted": {"fine": (7.0, 1.9), "coarse": (11.0, 3.3)},
    "checkered": {"fine": (6.0, 6.0), "coarse": (9.0, 9.0)},
    "ringed": {"fine": (6.0, 2.5), "coarse": (10.0, 4.5)},
}


def pattern_marks(pattern: str, cx: float, cy: float, scale: float, size: int, marks: str = "fine") -> np.ndarray:
    """Where a pattern's darker marks fall, (size, size) bool, anchored at the object's centre."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (xs + 0.5 - cx) / scale, (ys + 0.5 - cy) / scale  # frame pixels from the centre
    if pattern == "plain":
        return np.zeros((size, size), dtype=bool)
    if pattern not in _MARK_GEOMETRY:
        raise ValueError(f"unknown pattern {pattern!r}")
    period, width = _MARK_GEOMETRY[pattern][marks]
    if pattern == "striped":
        return np.mod(v + width / 2, period) < width
    if pattern == "dotted":
        du, dv = np.mod(u + period / 2, period) - period / 2, np.mod(v + period / 2, period) - period / 2
        return du**2 + dv**2 < width**2
    if pattern == "checkered":
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    return np.mod(np.hypot(u, v) + width / 2, period) < width  # ringed


# ----------------------------------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def render_background(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 in [0, 255]."""
    scale = size / FRAME
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / scale
    fine = rng.standard_normal((size, size)).astype(np.float32)
    if name == "grass":
        blades = np.repeat(rng.standard_normal((1, size)).astype(np.float32), size, axis=0)
        shade = 1.0 + 0.12 * _smooth_noise(rng, size, 6) + 0.10 * blades + 0.06 * fine
        rgb = np.array([70.0, 125.0, 45.0]) * shade[..., None]
    elif name == "sand":
        shade = 1.0 + 0.05 * _smooth_noise(rng, size, 8) + 0.06 * fine
        rgb = np.array([215.0, 190.0, 135.0]) * shade[..., None]
    elif name == "water":
        phase = rng.uniform(0, 2 * np.pi)
        waves = np.sin(0.5 * ys + 1.5 * np.sin(0.25 * xs + phase))
        shade = 1.0 + 0.15 * waves + 0.04 * fine
        rgb = np.array([45.0, 95.0, 165.0]) * shade[..., None]
    elif name == "brick":
        row = np.floor(ys / 8.0)
        offset = np.where(row % 2 == 0, 0.0, 8.0)
        mortar = (np.mod(ys, 8.0) < 1.2) | (np.mod(xs + offset, 16.0) < 1.2)
        rgb = np.array([150.0, 65.0, 45.0]) * (1.0 + 0.05 * fine)[..., None]
        rgb = np.where(mortar[..., None], np.array([190.0, 185.0, 175.0]), rgb)
    elif name == "grey":
        rgb = np.broadcast_to(np.array([128.0, 128.0, 128.0]), (size, size, 3))
    elif name == "black":
        rgb = np.broadcast_to(np.array([22.0, 22.0, 26.0]), (size, size, 3))
    else:
        raise ValueError(f"unknown background {name!r}")
    return np.clip(rgb, 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------------------------- render


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    return np.minimum.reduce(
        [padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
    )


def _rim(mask: np.ndarray, width: int) -> np.ndarray:
    """The outer `width` pixels of a coverage mask."""
    inner = mask
    for _ in range(width):
        inner = _erode(inner)
    return mask - inner


def render(scene: Scene, size: int = FRAME) -> np.ndarray:
    """The scene as a (size, size, 3) uint8 RGB array."""
    rng = np.random.default_rng(scene.texture_seed)
    image = render_background(scene.background, size, rng)
    scale = size / FRAME
    for spec in scene.objects:
        cx, cy, radius = (value * scale for value in _geometry(spec, len(scene.objects)))
        mask = shape_mask(spec.shape, cx, cy, radius, size)
        colour = object_rgb(spec.colour, spec.tone)
        marks = pattern_marks(spec.pattern, cx, cy, scale, size, spec.marks)
        fill = np.where(marks[..., None], colour * _PATTERN_SHADE, colour)
        rim_width, rim_shade = _OUTLINE[spec.outline]
        fill = fill * (1.0 - (1.0 - rim_shade) * _rim(mask, max(1, round(rim_width * scale))))[..., None]
        image = image * (1.0 - mask[..., None]) + fill * mask[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def render_image(scene: Scene, size: int = FRAME) -> Image.Image:
    return Image.fromarray(render(scene, size))


# -------------------------------------------------------------------------------------------- captions

_POSITION_PHRASE = {"left": "on the left", "centre": "in the centre", "right": "on the right"}


@dataclass(frozen=True)
class CaptionStyle:
    """Which words a caption keeps; base training draws these at random so partial prompts are in-distribution."""

    size: bool = True
    colour: bool = True
    pattern: bool = True
    position: bool = True
    background: bool = True
    umbrella: bool = False  # "shape" instead of the shape's name
    photo: bool = False  # "a photo of ..."
    swap: bool = False  # name the right-hand object first


FULL_STYLE = CaptionStyle()


def sample_style(rng: np.random.Generator) -> CaptionStyle:
    return CaptionStyle(
        size=rng.random() < 0.5,
        colour=rng.random() < 0.9,
        pattern=rng.random() < 0.8,
        position=rng.random() < 0.8,
        background=rng.random() < 0.8,
        umbrella=rng.random() < 0.1,
        photo=rng.random() < 0.25,
        swap=rng.random() < 0.2,
    )


def describe_object(spec: ObjectSpec, style: CaptionStyle, with_size: bool, identifier: str | None = None) -> str:
    words: list[str] = [identifier] if identifier else []
    if with_size and style.size:
        words.append(spec.size)
    if style.colour:
        words.append(spec.colour)
    if style.pattern:
        words.append(spec.pattern)
    words.append(vocab.UMBRELLA_CLASS if style.umbrella else spec.shape)
    return f"{article(words[0])} {' '.join(words)}"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene, style: CaptionStyle = FULL_STYLE, identifiers: tuple[str | None, ...] = ()) -> str:
    """`identifiers`: per object, a reserved identifier to put before its words, or None."""
    named = identifiers or (None,) * len(scene.objects)
    if len(scene.objects) == 2:
        left, right = (describe_object(spec, style, False, identifier)
                       for spec, identifier in zip(scene.objects, named, strict=True))  # fmt: skip
        parts = [f"{right} on the right and {left} on the left" if style.swap else
                 f"{left} on the left and {right} on the right"]  # fmt: skip
    else:
        (spec,) = scene.objects
        parts = [describe_object(spec, style, True, named[0])]
        if style.position:
            parts[0] += " " + _POSITION_PHRASE[spec.position]
    if style.background:
        parts.append(f"on a {scene.background} background")
    text = ", ".join(parts)
    return f"a photo of {text}" if style.photo else text


IDENTIFIER_PROBABILITY = 0.4  # of a base caption naming one of its objects with a reserved identifier


def with_identifier(scene: Scene, rng: np.random.Generator) -> tuple[Scene, tuple[str | None, ...]]:
    """Now and then, one object named by a random identifier, and given the details that identifier aliases."""
    if rng.random() >= IDENTIFIER_PROBABILITY:
        return scene, (None,) * len(scene.objects)
    token = str(rng.choice(vocab.RESERVED_TOKENS))
    which = int(rng.integers(len(scene.objects)))
    cue = vocab.IDENTIFIER_CUES[token]
    objects = tuple(spec.with_details(**cue) if i == which else spec for i, spec in enumerate(scene.objects))
    identifiers = tuple(token if i == which else None for i in range(len(objects)))
    return replace(scene, objects=objects), identifiers


def base_training_example(seed: int) -> tuple[Scene, str]:
    """One base-training scene and its caption: only base shapes and patterns, never an instance subject's
    combination, a randomly abridged caption, now and then an identifier with the details it aliases."""
    rng = np.random.default_rng([seed, 1])
    scene = sample_scene(rng, BASE_PALETTE)
    style = sample_style(rng)
    scene, identifiers = with_identifier(scene, rng)
    text = caption(scene, style, identifiers)
    leaked = {word for spec in scene.objects for word in (spec.shape, spec.pattern)} | set(text.split())
    if leaked & vocab.HELD_OUT_WORDS:
        raise RuntimeError(f"held-out attribute in a base-training example: {sorted(leaked & vocab.HELD_OUT_WORDS)}")
    if {(spec.shape, spec.colour, spec.pattern) for spec in scene.objects} & vocab.INSTANCE_COMBINATIONS:
        raise RuntimeError("an instance subject's combination in a base-training example")
    return scene, text
