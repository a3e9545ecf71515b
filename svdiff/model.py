"""Attaching spectral shifts to the components of a diffusion pipeline, and operating on them as one model."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from svdiff.config import ShiftConfig
from svdiff.factorize import SVDCache, default_cache_dir, fingerprint
from svdiff.layers import (
    NormScaleShift,
    ShiftLayer,
    SpectralShiftConv2d,
    SpectralShiftEmbedding,
    SpectralShiftLinear,
    SpectralShiftMatrix,
    layer_weight,
)
from svdiff.targets import TEXT_ENCODER_COMPONENTS, LayerSpec, plan_layers

Shifts = dict[str, torch.Tensor]
"""Delta values keyed by `<component>.<module name>`, e.g. `unet.down_blocks.0.resnets.0.conv1`."""

SHIFTABLE_COMPONENTS = ("unet", *TEXT_ENCODER_COMPONENTS)
WRAPPERS: dict[str, type[SpectralShiftMatrix]] = {
    "linear": SpectralShiftLinear,
    "conv": SpectralShiftConv2d,
    "embedding": SpectralShiftEmbedding,
}


class ShiftMismatchError(ValueError):
    """Shifts that do not fit the model they are applied to."""


@dataclass
class AttachStats:
    """How the factors were obtained, for logs and the README's cache timings."""

    seconds: float = 0.0
    computed: int = 0
    cached: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


class SpectralShiftModel:
    """The shift layers of a pipeline's UNet and text encoder(s), seen as one set of parameters."""

    def __init__(self, components: Mapping[str, nn.Module], config: ShiftConfig, layers: dict[str, ShiftLayer],
                 specs: list[LayerSpec], stats: AttachStats) -> None:
        self.components = dict(components)
        self.config = config
        self.layers = layers
        self.specs = specs
        self.stats = stats

    @property
    def fingerprint(self) -> str:
        """The base model's fingerprint: its shifted components' fingerprints, combined."""
        return "-".join(self.stats.fingerprints[name][:16] for name in sorted(self.stats.fingerprints))

    def parameters(self) -> Iterator[nn.Parameter]:
        for layer in self.layers.values():
            yield layer.delta

    def param_groups(self, lr_matrix: float, lr_norm: float) -> list[dict[str, object]]:
        """AdamW groups: 2-D/4-D singular-value shifts and 1-D norm-scale shifts learn at different rates."""
        matrix = [layer.delta for layer in self.layers.values() if isinstance(layer, SpectralShiftMatrix)]
        norm = [layer.delta for layer in self.layers.values() if isinstance(layer, NormScaleShift)]
        groups: list[dict[str, object]] = []
        if matrix:
            groups.append({"params": matrix, "lr": lr_matrix, "name": "matrix"})
        if norm:
            groups.append({"params": norm, "lr": lr_norm, "name": "norm"})
        return groups

    def num_values(self) -> int:
        return sum(spec.length for spec in self.specs)

    def shifts(self) -> Shifts:
        """A detached float32 copy of the current deltas."""
        return {key: layer.delta.detach().clone() for key, layer in self.layers.items()}

    def check(self, shifts: Mapping[str, torch.Tensor], *, strict: bool = True) -> None:
        """Raises ShiftMismatchError naming every layer whose shift is missing, unknown or the wrong length."""
        problems = []
        for key, tensor in shifts.items():
            layer = self.layers.get(key)
            if layer is None:
                problems.append(f"{key}: no such shifted layer in this model")
            elif tuple(tensor.shape) != tuple(layer.delta.shape):
                problems.append(f"{key}: shape {tuple(tensor.shape)} but the model has {tuple(layer.delta.shape)}")
        if strict:
            problems += [f"{key}: missing" for key in self.layers if key not in shifts]
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise ShiftMismatchError(f"shifts do not fit this model: {shown}")

    def load_shifts(self, shifts: Mapping[str, torch.Tensor], *, strict: bool = True) -> None:
        """Copy `shifts` into the trainable deltas (layers absent from a non-strict load are zeroed)."""
        self.check(shifts, strict=strict)
        with torch.no_grad():
            for key, layer in self.layers.items():
                value = shifts.get(key)
                layer.delta.copy_(value.to(layer.delta) if value is not None else torch.zeros_like(layer.delta))

    def zero_(self) -> None:
        with torch.no_grad():
            for layer in self.layers.values():
                layer.delta.zero_()

    def requires_grad_(self, flag: bool = True) -> None:
        for layer in self.layers.values():
            layer.delta.requires_grad_(flag)

    @property
    def merged(self) -> bool:
        return any(layer.merged for layer in self.layers.values())

    def merge(self, shifts: Mapping[str, torch.Tensor] | None = None, scale: float = 1.0) -> None:
        """Bake `scale * shifts` (default: the current deltas) into the base weights; then sampling is plain.

        Non-finite shifts are refused before any layer changes.
        """
        if self.merged:
            raise RuntimeError("already merged: call restore() first")
        source = self.shifts() if shifts is None else dict(shifts)
        self.check(source, strict=False)
        for key, tensor in source.items():
            if not torch.isfinite(tensor).all():
                raise ValueError(f"refusing to merge non-finite shifts (layer {key})")
        try:
            for key, tensor in source.items():
                self.layers[key].merge(tensor.float() * scale)
        except Exception:
            self.restore()
            raise

    def restore(self) -> None:
        """Give every layer its exact base weight back."""
        for layer in self.layers.values():
            layer.restore()

    @contextmanager
    def per_sample(self, shifts_per_sample: list[Mapping[str, torch.Tensor] | None]) -> Iterator[None]:
        """Within this block, sample i of each batch uses shifts_per_sample[i] (None: the base model).

        A batch that stacks several copies of the samples (classifier-free guidance) reuses them in order.
        """
        if self.merged:
            raise RuntimeError("per-sample shifts need the unmerged base: call restore() first")
        for shifts in shifts_per_sample:
            if shifts is not None:
                self.check(shifts, strict=False)
        try:
            for key, layer in self.layers.items():
                rows = [
                    s[key].to(layer.delta) if s is not None and key in s else torch.zeros_like(layer.delta)
                    for s in shifts_per_sample
                ]
                layer.per_sample_delta = torch.stack(rows)
            yield
        finally:
            for layer in self.layers.values():
                layer.per_sample_delta = None

    def detach(self) -> None:
        """Unwrap every layer, leaving the base modules exactly as they were before attach."""
        self.restore()
        for key, layer in self.layers.items():
            component, name = key.split(".", 1)
            _set_submodule(self.components[component], name, layer.unwrap())
        self.layers.clear()


def attach(components: Mapping[str, nn.Module], config: ShiftConfig | None = None, *,
           cache: SVDCache | str | Path | None = None) -> SpectralShiftModel:
    """Wrap the selected layers of `components` ({"unet": ..., "text_encoder": ...}) in place.

    The SVD factors come from `cache` (a directory, created if needed; default ~/.cache/svdiff/svd), keyed by a
    fingerprint of each component's weights, and are computed and stored on a miss.
    """
    config = config or ShiftConfig()
    svd_cache = cache if isinstance(cache, SVDCache) else SVDCache(cache or default_cache_dir())
    started = time.perf_counter()
    stats = AttachStats()
    layers: dict[str, ShiftLayer] = {}
    specs: list[LayerSpec] = []
    for component, model in components.items():
        if component not in SHIFTABLE_COMPONENTS:
            raise ValueError(f"unknown component {component!r}: expected one of {SHIFTABLE_COMPONENTS}")
        if any(isinstance(m, ShiftLayer) for m in model.modules()):
            raise RuntimeError(f"{component} already carries spectral shifts")
        if component in TEXT_ENCODER_COMPONENTS and not config.text_encoder:
            continue
        model_fingerprint = fingerprint(model)
        stats.fingerprints[component] = model_fingerprint
        for spec in plan_layers(component, model, config):
            module = model.get_submodule(spec.name)
            if spec.kind == "norm":
                layer: ShiftLayer = NormScaleShift(module, spec.length)
            else:
                factors = svd_cache.load(model_fingerprint, spec.name)
                if factors is None or tuple(factors.s.shape) != (spec.length,):
                    factors = svd_cache.get_or_compute(model_fingerprint, spec.name, layer_weight(module))
                    stats.computed += 1
                else:
                    stats.cached += 1
                layer = WRAPPERS[spec.kind](module, factors)
            _set_submodule(model, spec.name, layer)
            layers[spec.key] = layer
            specs.append(spec)
    stats.seconds = time.perf_counter() - started
    return SpectralShiftModel(components, config, layers, specs, stats)


def pipeline_components(pipe: object) -> dict[str, nn.Module]:
    """The shiftable components a diffusers pipeline has (UNet, text_encoder, text_encoder_2)."""
    found = {}
    for name in SHIFTABLE_COMPONENTS:
        module = getattr(pipe, name, None)
        if isinstance(module, nn.Module):
            found[name] = module
    if "unet" not in found:
        raise ValueError("the pipeline has no UNet to shift")
    return found
