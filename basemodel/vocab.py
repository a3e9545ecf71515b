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

# Instance details: what a subject has beyond its words. Base training draws them at random under the same caption
# (no word names them) and the attribute reader reads them, so a subject is a particular instance, as a user's dog is.
TONES: tuple[str, ...] = ("deep", "mid", "pale")  # the exact shade within a colour word
MARKS: tuple[str, ...] = ("fine", "coarse")  # the pattern's period and mark size (stripe, dot, ring, cell)
OUTLINES: tuple[str, ...] = ("soft", "bold")
DETAILS: dict[str, tuple[str, ...]] = {"tone": TONES, "marks": MARKS, "outline": OUTLINES}

# Each reserved identifier is a rare alias for one set of instance details: base captions carry one now and then,
# and the object it precedes takes those details. The text encoder so passes the identifiers on, as it does
# attribute words, while an identifier alone asks for nothing a subject is made of: its shape, colour and pattern
# stay free. Personalization overwrites the alias.
_DETAIL_SETS: tuple[dict[str, str], ...] = tuple(
    {"tone": tone, "marks": marks, "outline": outline} for tone in TONES for marks in MARKS for outline in OUTLINES
)
IDENTIFIER_CUES: dict[str, dict[str, str]] = {
    token: _DETAIL_SETS[(7 * i) % len(_DETAIL_SETS)] for i, token in enumerate(RESERVED_TOKENS)
}

# The instance subjects' (shape, colour, pattern): base training never draws these combinations, so that only a
# subject's identifier can bring one back (basemodel.subjects).
INSTANCE_COMBINATIONS: frozenset[tuple[str, str, str]] = frozenset({
    ("diamond", "green", "dotted"),
    ("cross", "red", "striped"),
    ("circle", "yellow", "striped"),
    ("square", "purple", "dotted"),
})  # fmt: skip

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
