"""Small labelled PNG grids: one row per label, `n` images of 64 px per row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from basemodel.world import FRAME

LABEL_WIDTH = 96


def grid(rows: Sequence[tuple[str, Sequence[Image.Image]]], n: int, title: str | None = None) -> Image.Image:
    top = 14 if title else 0
    canvas = Image.new("RGB", (LABEL_WIDTH + n * FRAME, top + len(rows) * FRAME), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 1), title, fill=(0, 0, 0))
    for r, (label, images) in enumerate(rows):
        y = top + r * FRAME
        for line, text in enumerate(_wrap(label, 15)):
            draw.text((4, y + 4 + 12 * line), text, fill=(0, 0, 0))
        for c, image in enumerate(images[:n]):
            canvas.paste(image.convert("RGB").resize((FRAME, FRAME)), (LABEL_WIDTH + c * FRAME, y))
    return canvas


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines[:5]


def save_grid(path: Path, rows: Sequence[tuple[str, Sequence[Image.Image]]], n: int, title: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, n, title).save(path, optimize=True)
