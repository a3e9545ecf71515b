"""Synthetic photos and subjects for the recipe tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from svdiff.train_config import Subject


def photo(seed: int, color: tuple[int, int, int], size: tuple[int, int] = (24, 20)) -> Image.Image:
    """A coloured frame around a random pattern; not square, so preparation must crop it."""
    rng = np.random.default_rng(seed)
    width, height = size
    array = np.empty((height, width, 3), np.uint8)
    array[...] = color
    pattern = rng.integers(0, 255, (height // 2, width // 2, 3))
    array[height // 4 : height // 4 + height // 2, width // 4 : width // 4 + width // 2] = pattern
    return Image.fromarray(array)


def subject(token: str, class_word: str, color: tuple[int, int, int], count: int = 3, seed: int = 0) -> Subject:
    return Subject(token, class_word, [photo(seed + i, color) for i in range(count)])
