"""The words of the procedural world, split into what base training may use and what it must never see."""

from __future__ import annotations

BASE_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
# Held out of base training: only the attribute reader and the personalization subjects use them.
HELD_OUT_SHAPES: tuple[str, ...] = ("heart", "moon")
SHAPES: tuple[str, ...] = BASE_SHAPES + HELD_OUT_SHAPES

COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white")

BASE_PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
HELD_OUT_PATTERNS: tuple[str, ...] = ("checkered", "ringed")
PATTERNS: tuple[str, ...] = BASE_PATTERNS + HELD_OUT_PATTERNS

BACKGROUNDS: tuple[str, ...] = ("grass", "sand", "water", "brick", "grey", "black")
SINGLE_POSITIONS: tuple[str, ...] = ("left", "centre", "right")
PAIR_POSITIONS: tuple[str, ...] = ("left", "right")
SIZES: tuple[str, ...] = ("small", "large")

# The umbrella class word: base captions sometimes say "shape" instead of the shape's name, so a subject whose
# shape is held out still has a class word the base model knows.
UMBRELLA_CLASS = "shape"

FUNCTION_WORDS: tuple[str, ...] = ("a", "an", "photo", "of", "on", "in", "the", "and", "background", UMBRELLA_CLASS)

# Rare identifiers for personalization ("a photo of sks star"): single tokens that no caption ever contains.
RESERVED_TOKENS: tuple[str, ...] = (
    "sks", "zwx", "qlt", "vxp", "bnq", "kfz", "wqj", "xjr",
    "pdv", "gvm", "hzt", "jyb", "mqx", "tkv", "yfw", "zpl",
    "rhx", "cqv", "dwj", "fxk",
)  # fmt: skip

HELD_OUT_WORDS: frozenset[str] = frozenset(HELD_OUT_SHAPES + HELD_OUT_PATTERNS)

WORLD_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        FUNCTION_WORDS + SHAPES + COLOURS + PATTERNS + BACKGROUNDS + SINGLE_POSITIONS + PAIR_POSITIONS + SIZES
    )
)


def free_reserved_token(used: set[str] | frozenset[str] = frozenset()) -> str:
    """The first reserved identifier not in `used`; raises when all are taken."""
    for token in RESERVED_TOKENS:
        if token not in used:
            return token
    raise LookupError(f"all {len(RESERVED_TOKENS)} reserved identifier tokens are in use")
