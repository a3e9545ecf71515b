"""Photo preparation: EXIF orientation, RGB, resize and centre crop, flips."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from svdiff.data import ImageError, prepare_images, random_flip, to_pil

EXIF_ORIENTATION = 0x0112


def _jpeg_rotated() -> bytes:
    """A 40x20 landscape JPEG, left half black and right half white, tagged "rotate 90 clockwise to view"."""
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, 20:] = 255
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def test_exif_orientation_is_applied_before_cropping():
    pixels = prepare_images([_jpeg_rotated()], 16)  # upright it is 20 wide, 40 tall, the black half on top
    assert pixels.shape == (1, 3, 16, 16)
    top, bottom = pixels[0, :, :4].mean().item(), pixels[0, :, -4:].mean().item()
    assert top < -0.9 and bottom > 0.9  # ignoring EXIF, the crop would be split left/right and both means near 0


def test_modes_sizes_and_sources_are_normalised(tmp_path):
    gray = Image.new("L", (30, 18), 128)
    rgba = Image.new("RGBA", (18, 30), (255, 0, 0, 10))
    path = tmp_path / "p.png"
    Image.new("RGB", (50, 50), (0, 0, 255)).save(path)
    pixels = prepare_images([gray, rgba, path], 16)
    assert pixels.shape == (3, 3, 16, 16) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert torch.allclose(pixels[1, 0], torch.ones(16, 16)) and torch.allclose(pixels[2, 2], torch.ones(16, 16))
    assert np.array_equal(np.asarray(to_pil(pixels[2])), np.asarray(Image.new("RGB", (16, 16), (0, 0, 255))))
    with pytest.raises(ImageError, match="not a readable image"):
        prepare_images([b"not an image"], 16)


def test_flips_are_seeded_and_can_be_turned_off():
    images = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)
    first = random_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, random_flip(images, torch.Generator().manual_seed(0)))
    flips = [torch.equal(random_flip(images[:1], torch.Generator().manual_seed(s))[0], images[0].flip(-1))
             for s in range(20)]
    assert 0 < sum(flips) < 20
    assert torch.equal(random_flip(images, torch.Generator().manual_seed(0), enabled=False), images)
