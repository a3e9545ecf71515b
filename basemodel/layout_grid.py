"""Does the base place an object where the prompt says, or where the initial noise has a blob?

`python -m basemodel.layout_grid --model PATH --out grid.png`: one row per position word ("on the left", "in the
centre", "on the right") of the same object, and a pair row; every row uses the same 6 initial noises, so a column
whose object stays put across the position rows shows a layout read from the noise, not from the words.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from basemodel import BASE_MODEL_PATH, DEFAULT_GUIDANCE, DEFAULT_STEPS
from basemodel.pipeline import load

ROWS = (
    "a small red plain square on the left, on a grey background",
    "a small red plain square in the centre, on a grey background",
    "a small red plain square on the right, on a grey background",
    "a blue striped circle on the left and a yellow dotted star on the right, on a sand background",
)
SEEDS = 6
GAP = 2


def layout_grid(model: Path, seeds: int = SEEDS) -> Image.Image:
    pipeline = load(model)
    rows = []
    for prompt in ROWS:
        generator = torch.Generator().manual_seed(0)  # the same noises in every row
        rows.append(pipeline([prompt] * seeds, height=64, width=64, num_inference_steps=DEFAULT_STEPS,
                             guidance_scale=DEFAULT_GUIDANCE, generator=generator).images)  # fmt: skip
    side = rows[0][0].width + GAP
    grid = Image.new("RGB", (seeds * side, len(rows) * side), "white")
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            grid.paste(image, (c * side, r * side))
    return grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=BASE_MODEL_PATH)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    layout_grid(args.model).save(args.out)
    print(f"layout-grid: {len(ROWS)} rows x {SEEDS} noises in {args.out}")


if __name__ == "__main__":
    main()
