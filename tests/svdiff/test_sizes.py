"""The real SD v1.5 architecture, built on the meta device: shift counts and checkpoint size (METHOD.md)."""

from __future__ import annotations

import torch

from bench.architectures import clip_vit_l14_text, sd15_unet
from bench.checkpoint_size import _checkpoint_bytes, _specs


def test_sd15_counts_and_checkpoint_size():
    with torch.device("meta"):
        specs = _specs({"unet": sd15_unet(), "text_encoder": clip_vit_l14_text()})
    counts: dict[tuple[str, str], int] = {}
    for spec in specs:
        counts[spec.component, spec.group] = counts.get((spec.component, spec.group), 0) + spec.length
    assert counts[("unet", "2d")] == 140_416
    assert counts[("unet", "4d")] == 82_280
    assert counts[("unet", "1d")] == 100_160
    assert counts[("text_encoder", "2d")] + counts[("text_encoder", "1d")] == 75_341
    assert _checkpoint_bytes(specs, "float16") <= 850_000
