"""Spectral-shift wrappers: each wraps an existing layer in place and adds one trainable `delta`.

2-D/4-D weights (Linear, Conv2d, Embedding) shift their singular values: W' = W + U diag(relu(s + delta) - s) Vh.
1-D norm scales shift additively: gamma' = gamma + delta. Biases and every base tensor stay frozen.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from svdiff.factorize import Factors

# Above this relative residual the factorized forward would not match the rebuilt weight to float32 tolerance.
FACTORIZED_RESIDUAL_LIMIT = 1e-5


def layer_weight(module: nn.Module) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return weight


class ShiftLayer(nn.Module):
    """What every wrapper shares: the base layer, the trainable delta, merge/restore and per-sample deltas."""

    base_layer: nn.Module
    delta: nn.Parameter

    def __init__(self, base_layer: nn.Module, length: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self._base_requires_grad = {name: p.requires_grad for name, p in base_layer.named_parameters()}
        for param in base_layer.parameters():
            param.requires_grad_(False)
        weight = layer_weight(base_layer)
        self.delta = nn.Parameter(torch.zeros(length, device=weight.device, dtype=torch.float32))
        self.per_sample_delta = None  # (batch, length) for the batched multi-subject forward
        self._stashed_weight: torch.Tensor | None = None  # the base weight while a merged one replaces it
        self._zero_at_version: tuple[int, bool] | None = None

    def __getattr__(self, name: str) -> Any:
        # Code that reads e.g. `layer.weight` or `conv.out_channels` keeps working on the wrapped layer.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    @property
    def per_sample_delta(self) -> torch.Tensor | None:
        return self._per_sample_delta

    @per_sample_delta.setter
    def per_sample_delta(self, deltas: torch.Tensor | None) -> None:
        self._per_sample_delta = deltas
        self._per_sample_cache: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def merged(self) -> bool:
        return self._stashed_weight is not None

    def unwrap(self) -> nn.Module:
        """The base layer with its exact weight and its original requires_grad flags."""
        self.restore()
        for name, param in self.base_layer.named_parameters():
            param.requires_grad_(self._base_requires_grad.get(name, param.requires_grad))
        return self.base_layer

    def is_zero(self) -> bool:
        """Whether delta is all zeros, rechecked only after delta changed (its version counter moved)."""
        version = self.delta._version
        if self._zero_at_version is None or self._zero_at_version[0] != version:
            self._zero_at_version = (version, not bool(self.delta.detach().any()))
        return self._zero_at_version[1]

    def _plain(self) -> bool:
        """No shift to apply: an inference forward can run the base layer as it is."""
        return not (torch.is_grad_enabled() and self.delta.requires_grad) and self.is_zero()

    @property
    def base_weight(self) -> torch.Tensor:
        weight = self._stashed_weight if self._stashed_weight is not None else layer_weight(self.base_layer)
        return weight.detach()

    def weight_with(self, delta: torch.Tensor) -> torch.Tensor:
        """The base weight with `delta` applied, in float32."""
        raise NotImplementedError

    def merge(self, delta: torch.Tensor) -> None:
        """Write the shifted weight into the base layer, so later forwards cost nothing extra."""
        if self.merged:
            raise RuntimeError("layer is already merged: restore() it before merging other shifts")
        if not torch.isfinite(delta).all():
            raise ValueError("refusing to merge non-finite shifts")
        weight = layer_weight(self.base_layer)
        with torch.no_grad():
            merged = self.weight_with(delta.to(weight.device, torch.float32)).to(weight.dtype)
        self._stashed_weight = weight.data
        weight.data = merged

    def restore(self) -> None:
        """Put the exact base weight back."""
        if self._stashed_weight is not None:
            layer_weight(self.base_layer).data = self._stashed_weight
            self._stashed_weight = None

    def _per_sample(self, batch: int) -> torch.Tensor:
        deltas = self.per_sample_delta
        assert deltas is not None
        if batch == deltas.shape[0]:
            return deltas
        # Classifier-free guidance stacks [uncond; cond]: each half is in sample order.
        if batch % deltas.shape[0]:
            raise ValueError(f"batch of {batch} does not match {deltas.shape[0]} per-sample shifts")
        return deltas.repeat(batch // deltas.shape[0], 1)

    def _prepare_per_sample(self, deltas: torch.Tensor, dims: int) -> torch.Tensor:
        """What the per-sample forward multiplies by, from (batch, length) deltas, shaped for a `dims`-D input."""
        raise NotImplementedError

    def _per_sample_values(self, batch: int, dims: int) -> torch.Tensor:
        """`_prepare_per_sample` for this batch size, kept until per_sample_delta changes: every denoising step of
        a batched generation reuses it, and recomputing it costs several small ops per layer per step."""
        key = (batch, dims)
        values = self._per_sample_cache.get(key)
        if values is None:
            values = self._prepare_per_sample(self._per_sample(batch), dims)
            if not values.requires_grad:  # a graph must not be reused across backward passes
                self._per_sample_cache[key] = values
        return values


class SpectralShiftMatrix(ShiftLayer):
    """Shared by the 2-D (Linear, Embedding) and 4-D (Conv2d) wrappers."""

    U: torch.Tensor
    s: torch.Tensor
    Vh: torch.Tensor

    def __init__(self, base_layer: nn.Module, factors: Factors) -> None:
        super().__init__(base_layer, factors.s.numel())
        device = layer_weight(base_layer).device
        # Frozen factors are non-persistent buffers: they follow .to() but never enter the model's state_dict.
        self.register_buffer("U", factors.U.to(device), persistent=False)
        self.register_buffer("s", factors.s.to(device), persistent=False)
        self.register_buffer("Vh", factors.Vh.to(device), persistent=False)
        self.rel_residual = factors.rel_residual
        # "auto" picks the cheaper exact training forward per input size; the others force one (tests, benchmarks).
        self.forward_mode: Literal["auto", "rebuild", "factors"] = "auto"

    def gain(self, delta: torch.Tensor) -> torch.Tensor:
        """relu(s + delta) - s: exactly zero where delta is zero, since singular values are non-negative."""
        return F.relu(self.s + delta) - self.s

    @property
    def factors_exact(self) -> bool:
        """Whether U diag(s) Vh reproduces the base weight to float32 precision (the SVD's residual is below it)."""
        return self.rel_residual <= FACTORIZED_RESIDUAL_LIMIT

    def _prepare_per_sample(self, deltas: torch.Tensor, dims: int) -> torch.Tensor:
        """Each sample's relu(s + delta) where the factors alone are its shifted weight, else its gains.

        With exact factors, W' = U diag(relu(s + delta)) Vh: one factorized forward gives the shifted output, and
        the base layer's own forward (the residual it would add is below float32 resolution) is skipped.
        """
        values = F.relu(self.s + deltas) if self.factors_exact else self.gain(deltas)  # (B, k)
        return values.view(values.shape[0], *self._value_shape(dims))

    def _value_shape(self, dims: int) -> tuple[int, ...]:
        """How a sample's (k,) values broadcast against the factor projection of a `dims`-D input."""
        return (*([1] * (dims - 2)), -1)

    def weight_with(self, delta: torch.Tensor) -> torch.Tensor:
        change = (self.U * self.gain(delta)) @ self.Vh  # (c_out, n)
        return self.base_weight.float() + change.view(self.base_weight.shape)

    def _rebuilt_weight(self) -> torch.Tensor:
        return self.weight_with(self.delta).to(layer_weight(self.base_layer).dtype)

    def _factor(self, tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.dtype == like.dtype or torch.is_autocast_enabled() else tensor.to(like.dtype)

    def _factorized_is_cheaper(self, tokens: int) -> bool:
        """Per-step cost (multiply-adds) of the two exact training forwards, forward plus backward.

        Rebuild: W' = W + U g Vh (c k n), forward and input gradient (2 T c n), and the shift gradient through
        the full weight gradient (T c n + c k n). Factors: x Vh^T, * sigma, U, and their input gradients
        (2 T k (c + n)); the shift gradient then costs only T k.
        """
        if self.forward_mode != "auto":
            return self.forward_mode == "factors"
        if not self.factors_exact:
            return False
        c, k, n = self.U.shape[0], self.s.numel(), self.Vh.shape[1]
        rebuild = 3 * tokens * c * n + 2 * c * k * n
        factorized = 2 * tokens * k * (c + n)
        return factorized < rebuild

    def _training(self) -> bool:
        return torch.is_grad_enabled() and self.delta.requires_grad


class SpectralShiftLinear(SpectralShiftMatrix):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer: nn.Linear = self.base_layer  # type: ignore[assignment]
        if self.merged or (self.per_sample_delta is None and self._plain()):
            return layer(x)
        if self.per_sample_delta is not None:
            values = self._per_sample_values(x.shape[0], x.dim())  # (B, 1.., k)
            projected = (F.linear(x, self._factor(self.Vh, x)) * values).to(x.dtype)  # (B, ..., k)
            if self.factors_exact:
                return F.linear(projected, self._factor(self.U, x), layer.bias)
            return layer(x) + F.linear(projected, self._factor(self.U, x))
        if self._training() and self._factorized_is_cheaper(x.numel() // x.shape[-1]):
            sigma = F.relu(self.s + self.delta)
            projected = F.linear(x, self._factor(self.Vh, x)) * sigma  # (..., k)
            return F.linear(projected.to(x.dtype), self._factor(self.U, x), layer.bias)
        return F.linear(x, self._rebuilt_weight(), layer.bias)


class SpectralShiftConv2d(SpectralShiftMatrix):
    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layer: nn.Conv2d = self.base_layer  # type: ignore[assignment]
        return layer._conv_forward(x, weight, bias)

    def _factorized(self, x: torch.Tensor, gains: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """x -> conv(x, Vh) -> * gains -> 1x1 conv with U; gains are (k,) or (B, k)."""
        layer: nn.Conv2d = self.base_layer  # type: ignore[assignment]
        k = self.s.numel()
        Vh = self._factor(self.Vh, x).view(k, *layer.weight.shape[1:])
        U = self._factor(self.U, x).view(layer.out_channels, k, 1, 1)
        projected = self._conv(x, Vh, None)  # (B, k, H', W')
        scaled = projected * gains.view(-1, k, 1, 1)
        return F.conv2d(scaled.to(x.dtype), U, bias)

    def _value_shape(self, dims: int) -> tuple[int, ...]:
        return (-1, 1, 1)

    def _output_positions(self, x: torch.Tensor) -> int:
        layer: nn.Conv2d = self.base_layer  # type: ignore[assignment]
        size = 1
        for dim, length in enumerate(x.shape[-2:]):
            pad = layer.padding[dim] if isinstance(layer.padding, tuple) else 0
            span = layer.dilation[dim] * (layer.kernel_size[dim] - 1) + 1
            size *= (length + 2 * int(pad) - span) // layer.stride[dim] + 1
        return x.shape[0] * size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer: nn.Conv2d = self.base_layer  # type: ignore[assignment]
        if self.merged or (self.per_sample_delta is None and self._plain()):
            return layer(x)
        if self.per_sample_delta is not None:
            values = self._per_sample_values(x.shape[0], x.dim())  # (B, k, 1, 1)
            if self.factors_exact:
                return self._factorized(x, values, layer.bias)
            return layer(x) + self._factorized(x, values, None)
        factorizable = layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
        if factorizable and self._training() and self._factorized_is_cheaper(self._output_positions(x)):
            return self._factorized(x, F.relu(self.s + self.delta), layer.bias)
        return self._conv(x, self._rebuilt_weight(), layer.bias)


class SpectralShiftEmbedding(SpectralShiftMatrix):
    """Looks rows up in the factors: rebuilding a vocabulary-sized table every step would cost far more.

    It can also carry token rows: offsets added to some tokens' own rows (a subject's identifier, as Custom
    Diffusion trains its modifier token), which spectral shifts cannot give one token alone.
    """

    def __init__(self, base_layer: nn.Module, factors: Factors) -> None:
        super().__init__(base_layer, factors)
        self.rows: dict[int, nn.Parameter] = {}  # token id -> (width,) offset of that token's row
        self.per_sample_rows: list[dict[int, torch.Tensor]] | None = None  # one mapping per sample

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        layer: nn.Embedding = self.base_layer  # type: ignore[assignment]
        base = layer(ids)
        if self.merged:
            return base  # rows are merged with the shifts
        if self.per_sample_delta is None and self._plain():
            return self._with_rows(ids, base)
        if self.per_sample_delta is not None:
            # Shared ids (e.g. position ids of shape (1, T)) broadcast against every sample's shifts.
            batch = self.per_sample_delta.shape[0] if ids.shape[0] == 1 else ids.shape[0]
            gains = self._per_sample_values(batch, ids.dim() + 1)  # (B, 1, k)
        else:
            gains = self.gain(self.delta)
        rows = F.embedding(ids, self.U) * gains  # (..., k)
        return self._with_rows(ids, base + (rows @ self.Vh).to(base.dtype))

    def _with_rows(self, ids: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`out` with each token row's offset added where its token occurs (per sample inside per_sample)."""
        if self.per_sample_rows is not None:
            per_sample = self.per_sample_rows
            if out.shape[0] % len(per_sample):
                raise ValueError(f"batch of {out.shape[0]} does not match {len(per_sample)} per-sample rows")
            per_sample = per_sample * (out.shape[0] // len(per_sample))  # classifier-free guidance stacks copies
            offsets = [sum(((ids[i] == token).unsqueeze(-1).to(out.dtype) * row.to(out) for token, row in
                            rows.items()), torch.zeros_like(out[i])) for i, rows in enumerate(per_sample)]  # fmt: skip
            return out + torch.stack(offsets)
        for token, row in self.rows.items():
            out = out + (ids == token).unsqueeze(-1).to(out.dtype) * row.to(out.dtype)
        return out

    def merge_rows(self, rows: dict[int, torch.Tensor]) -> None:
        """Add token rows into the merged weight (after merge(); restore() takes them out with the shifts)."""
        if not self.merged:
            raise RuntimeError("token rows merge into a merged weight: merge() first")
        weight = layer_weight(self.base_layer)
        with torch.no_grad():
            for token, row in rows.items():
                if not torch.isfinite(row).all():
                    raise ValueError(f"refusing to merge a non-finite row (token {token})")
                weight.data[token] += row.to(weight.device, weight.dtype)

    def _prepare_per_sample(self, deltas: torch.Tensor, dims: int) -> torch.Tensor:
        """Gains, always: the base row lookup is cheap, the vocabulary-sized factor product is not."""
        gains = self.gain(deltas)  # (B, k)
        return gains.view(gains.shape[0], *self._value_shape(dims))


class NormScaleShift(ShiftLayer):
    """GroupNorm/LayerNorm with an additive shift on its scale (no relu: scales may change sign)."""

    def weight_with(self, delta: torch.Tensor) -> torch.Tensor:
        return self.base_weight.float() + delta

    def _prepare_per_sample(self, deltas: torch.Tensor, dims: int) -> torch.Tensor:
        scales = self.weight_with(deltas)  # (B, C)
        if isinstance(self.base_layer, nn.GroupNorm):
            return scales.view(scales.shape[0], -1, *([1] * (dims - 2)))
        return scales.view(scales.shape[0], *([1] * (dims - 2)), -1)

    def _normalize(self, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.base_layer
        if isinstance(layer, nn.GroupNorm):
            return F.group_norm(x, layer.num_groups, weight, bias, layer.eps)
        assert isinstance(layer, nn.LayerNorm)
        return F.layer_norm(x, layer.normalized_shape, weight, bias, layer.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.base_layer
        if self.merged or (self.per_sample_delta is None and self._plain()):
            return layer(x)
        bias: torch.Tensor | None = layer.bias  # type: ignore[assignment]
        if self.per_sample_delta is not None:
            scales = self._per_sample_values(x.shape[0], x.dim()).to(x.dtype)  # (B, C, 1..) or (B, 1.., C)
            normalized = self._normalize(x, None, None)
            # In place on the fresh normalized tensor (the norm's backward does not keep it), unless the scales
            # need a gradient, which needs it unchanged.
            out = normalized * scales if scales.requires_grad else normalized.mul_(scales)
            if bias is None:
                return out
            return out.add_(bias.view(1, -1, *([1] * (x.dim() - 2))) if isinstance(layer, nn.GroupNorm) else bias)
        weight = self.weight_with(self.delta).to(layer_weight(self.base_layer).dtype)
        return self._normalize(x, weight, bias)
