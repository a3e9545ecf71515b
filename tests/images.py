"""Test images made with Pillow, and the three bundled dog photos."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

PHOTOS = Path(__file__).parent / "fixtures" / "photos"


def dog(index: int = 0) -> bytes:
    return (PHOTOS / f"{index:02d}.jpg").read_bytes()


def image(
    fmt: str = "PNG", size: tuple[int, int] = (320, 288), color: tuple[int, int, int] = (200, 30, 90), **save: object
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt, **save)
    return out.getvalue()


def jpeg_with_exif(orientation: int = 6, size: tuple[int, int] = (400, 300)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation  # rotate 90° on display
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}  # GPS latitude
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 40)).save(out, "JPEG", exif=exif)
    return out.getvalue()


def png_bomb(side: int = 30_000) -> bytes:
    """A valid PNG header declaring side x side pixels with a tiny compressed body: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\x00" + b"\x00" * side
    body = zlib.compress(row * 64, 9)  # only the first rows: decoding would need side*side bytes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
