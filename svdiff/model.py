"""Attaching spectral shifts to the components of a diffusion pipeline, and operating on them as one model."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
"""Delta values keyed by `<component>.<module name>`, e.g. `unet.down_blocks.0.resnets.0.conv1`, and token rows
keyed by `<embedding key>#<token id>`, e.g. `text_encoder.text_model.embeddings.token_embedding#49406`."""

ROW_MARK = "#"


def row_key(layer_key: str, token: int) -> str:
    return f"{layer_key}{ROW_MARK}{token}"


def split_row_key(key: str) -> tuple[str, int] | None:
    """(embedding layer key, token id) for a token row's key, None for a layer's."""
    layer_key, mark, token = key.partition(ROW_MARK)
    if not mark:
        return None
    if not token.isdigit():
        raise ShiftMismatchError(f"{key}: a token row's key ends in its token id")
    return layer_key, int(token)

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
        """A detached float32 copy of the current deltas and token rows."""
        deltas = {key: layer.delta.detach().clone() for key, layer in self.layers.items()}
        return deltas | {key: row.detach().clone() for key, row in self.token_rows().items()}

    def input_embedding_key(self, component: str = "text_encoder") -> str:
        """The key of `component`'s shifted token embedding (where token rows live)."""
        module: Any = self.components.get(component)
        embedding = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
        for key, layer in self.layers.items():
            if layer is embedding and isinstance(layer, SpectralShiftEmbedding):
                return key
        raise ShiftMismatchError(f"{component} has no shifted token embedding to carry token rows")

    def add_token_rows(self, tokens: Iterator[int] | list[int], component: str = "text_encoder") -> list[str]:
        """Zero rows for these token ids (kept if present), trainable; returns their keys."""
        key = self.input_embedding_key(component)
        layer = self.layers[key]
        assert isinstance(layer, SpectralShiftEmbedding)
        keys = []
        for token in tokens:
            self._check_row(key, token, (layer.embedding_dim,))
            if token not in layer.rows:
                layer.rows[token] = nn.Parameter(torch.zeros(layer.embedding_dim, device=layer.delta.device))
            keys.append(row_key(key, token))
        return keys

    def token_rows(self) -> dict[str, nn.Parameter]:
        """Every token row, keyed as in Shifts."""
        return {row_key(key, token): row for key, layer in self.layers.items()
                if isinstance(layer, SpectralShiftEmbedding) for token, row in sorted(layer.rows.items())}  # fmt: skip

    def drop_token_rows(self) -> None:
        for layer in self.layers.values():
            if isinstance(layer, SpectralShiftEmbedding):
                layer.rows.clear()

    def _check_row(self, layer_key: str, token: int, shape: tuple[int, ...]) -> str | None:
        layer = self.layers.get(layer_key)
        if not isinstance(layer, SpectralShiftEmbedding):
            return f"{row_key(layer_key, token)}: token rows belong to a shifted token embedding"
        if not 0 <= token < layer.num_embeddings:
            return f"{row_key(layer_key, token)}: no token {token} in a vocabulary of {layer.num_embeddings}"
        if shape != (layer.embedding_dim,):
            return f"{row_key(layer_key, token)}: shape {shape} but a row has ({layer.embedding_dim},)"
        return None

    def check(self, shifts: Mapping[str, torch.Tensor], *, strict: bool = True) -> None:
        """Raises ShiftMismatchError naming every layer whose shift is missing, unknown or the wrong length."""
        problems = []
        for key, tensor in shifts.items():
            row = split_row_key(key)
            if row is not None:
                problem = self._check_row(*row, tuple(tensor.shape))
                if problem:
                    problems.append(problem)
                continue
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
        """Copy `shifts` into the trainable deltas and token rows (layers absent from a non-strict load are zeroed,
        token rows absent from it dropped; a row present keeps its parameter, so an optimizer holding it goes on)."""
        self.check(shifts, strict=strict)
        rows = {key: value for key, value in shifts.items() if split_row_key(key) is not None}
        for key in self.token_rows().keys() - rows.keys():
            layer_key, token = split_row_key(key)  # type: ignore[misc]
            del self.layers[layer_key].rows[token]  # type: ignore[union-attr]
        with torch.no_grad():
            for key, layer in self.layers.items():
                value = shifts.get(key)
                layer.delta.copy_(value.to(layer.delta) if value is not None else torch.zeros_like(layer.delta))
            for key, value in rows.items():
                layer_key, token = split_row_key(key)  # type: ignore[misc]
                embedding = self.layers[layer_key]
                assert isinstance(embedding, SpectralShiftEmbedding)
                if token not in embedding.rows:
                    embedding.rows[token] = nn.Parameter(torch.zeros(embedding.embedding_dim,
                                                                     device=embedding.delta.device))
                embedding.rows[token].copy_(value.to(embedding.rows[token]))

    def zero_(self) -> None:
        with torch.no_grad():
            for layer in self.layers.values():
                layer.delta.zero_()
            for row in self.token_rows().values():
                row.zero_()

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
        rows: dict[str, dict[int, torch.Tensor]] = {}
        for key in [k for k in source if split_row_key(k) is not None]:
            layer_key, token = split_row_key(key)  # type: ignore[misc]
            rows.setdefault(layer_key, {})[token] = source.pop(key).float() * scale
        try:
            for key, tensor in source.items():
                self.layers[key].merge(tensor.float() * scale)
            for layer_key, tokens in rows.items():
                embedding = self.layers[layer_key]
                assert isinstance(embedding, SpectralShiftEmbedding)
                if not embedding.merged:
                    embedding.merge(torch.zeros_like(embedding.delta))
                embedding.merge_rows(tokens)
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
                if isinstance(layer, SpectralShiftEmbedding):
                    tokens = [{row[1]: value.to(layer.delta) for k, value in (s or {}).items()
                               if (row := split_row_key(k)) is not None and row[0] == key} for s in shifts_per_sample]
                    layer.per_sample_rows = tokens if any(tokens) else None
            yield
        finally:
            for layer in self.layers.values():
                layer.per_sample_delta = None
                if isinstance(layer, SpectralShiftEmbedding):
                    layer.per_sample_rows = None

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
