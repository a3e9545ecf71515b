"""Batches of fresh renders, deterministic from (seed, step)."""

from __future__ import annotations

import numpy as np
import torch

from basemodel import world


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> float (N, 3, H, W) in [-1, 1]."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


def to_images(batch: torch.Tensor) -> list[np.ndarray]:
    """float (N, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) arrays."""
    pixels = ((batch.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return list(pixels.permute(0, 2, 3, 1).cpu().numpy())


def base_batch(seed: int, step: int, size: int) -> tuple[torch.Tensor, list[str]]:
    """A batch of base-training renders and their (abridged) captions; example seeds never repeat across steps."""
    examples = [world.base_training_example(seed + step * size + i) for i in range(size)]
    return to_tensor([world.render(scene) for scene, _ in examples]), [text for _, text in examples]
