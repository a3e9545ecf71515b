"""Aspect-ratio sizes, output formats and their encoding (core.generation_options)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.generation_options import ASPECT_RATIOS, FORMATS, aspect_size, encode, format_of_key, image_format_of_key


@pytest.mark.parametrize("native", [64, 512, 768, 1024])
@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_aspect_sizes_are_multiples_of_8_near_the_native_area(ratio: str, native: int) -> None:
    width, height = aspect_size(ratio, native)
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width * height / native**2 - 1) < 0.04
    across, down = (int(p) for p in ratio.split(":"))
    assert abs((width / height) / (across / down) - 1) < 0.1


def test_aspect_sizes_of_the_bundled_and_a_512_base() -> None:
    assert [aspect_size(r, 64) for r in ASPECT_RATIOS] == [(64, 64), (72, 56), (56, 72), (88, 48), (48, 88)]
    assert [aspect_size(r, 512) for r in ASPECT_RATIOS] == [(512, 512), (592, 440), (440, 592), (680, 384),
                                                            (384, 680)]  # fmt: skip


def _noise_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_png_is_stored_as_it_came_and_lossy_formats_at_their_quality() -> None:
    png = _noise_png()
    assert encode(png, FORMATS["png"], None) == png
    for name, pil in (("jpeg", "JPEG"), ("webp", "WEBP")):
        low, high = encode(png, FORMATS[name], 10), encode(png, FORMATS[name], 95)
        assert Image.open(io.BytesIO(low)).format == pil and Image.open(io.BytesIO(high)).format == pil
        assert len(low) < len(high)
        assert encode(png, FORMATS[name], None) == encode(png, FORMATS[name], 90)  # the default quality


def test_formats_of_keys() -> None:
    assert format_of_key("users/u/generations/g/0.jpg").content_type == "image/jpeg"
    assert format_of_key("users/u/generations/g/0.webp").name == "webp"
    assert format_of_key("users/u/edits/e/output.png").name == "png"
    assert image_format_of_key("users/u/checkpoints/c/shifts.safetensors") is None
