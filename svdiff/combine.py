"""Combining subjects trained separately: weighted sums, interpolation and per-layer selection (style mixing)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from svdiff.model import Shifts


def combine(shifts: Sequence[Shifts], weights: Sequence[float] | None = None) -> Shifts:
    """sum_i w_i * delta_i per layer (default w_i = 1: the plain sum). Merged, this is relu(s + sum_i w_i delta_i).

    A layer present in only some inputs counts as zero in the others.
    """
    if not shifts:
        raise ValueError("combine needs at least one set of shifts")
    weights = list(weights) if weights is not None else [1.0] * len(shifts)
    if len(weights) != len(shifts):
        raise ValueError(f"{len(shifts)} sets of shifts but {len(weights)} weights")
    combined: Shifts = {}
    for source, weight in zip(shifts, weights, strict=True):
        for key, tensor in source.items():
            if key in combined and combined[key].shape != tensor.shape:
                raise ValueError(f"{key}: shapes {tuple(combined[key].shape)} and {tuple(tensor.shape)} differ")
            term = tensor.float() * weight
            combined[key] = combined[key] + term if key in combined else term
    return combined


def interpolate(first: Shifts, second: Shifts, alpha: float) -> Shifts:
    """relu(s + alpha * delta_1 + (1 - alpha) * delta_2)."""
    return combine([first, second], [alpha, 1.0 - alpha])


def mix_layers(base: Shifts, other: Shifts, patterns: Sequence[str]) -> Shifts:
    """Style mixing: `other`'s shifts for layers whose key matches any glob pattern, `base`'s elsewhere.

    For example `mix_layers(subject, style, ["unet.up_blocks.*"])` keeps the subject's down/mid layers.
    """
    if not patterns:
        raise ValueError("mix_layers needs at least one layer pattern")
    mixed: Shifts = {}
    for key in base.keys() | other.keys():
        source = other if any(fnmatch.fnmatchcase(key, p) for p in patterns) else base
        if key in source:
            mixed[key] = source[key].float().clone()
    if not any(any(fnmatch.fnmatchcase(key, p) for p in patterns) for key in other):
        raise ValueError(f"no layer matches {list(patterns)}")
    return dict(sorted(mixed.items()))
