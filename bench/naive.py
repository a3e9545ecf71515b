"""The public implementations' spectral shifts, as a baseline: every forward rebuilds U diag(relu(s + delta)) Vh.

Like them it drops the SVD residual and forms the diagonal matrix explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NaiveSpectralShift(nn.Module):
    def __init__(self, layer: nn.Linear | nn.Conv2d) -> None:
        super().__init__()
        self.layer = layer
        layer.weight.requires_grad_(False)
        if layer.bias is not None:
            layer.bias.requires_grad_(False)
        U, s, Vh = torch.linalg.svd(layer.weight.detach().flatten(1), full_matrices=False)
        self.register_buffer("U", U)
        self.register_buffer("s", s)
        self.register_buffer("Vh", Vh)
        self.delta = nn.Parameter(torch.zeros_like(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.U @ torch.diag(F.relu(self.s + self.delta)) @ self.Vh).view(self.layer.weight.shape)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return F.linear(x, weight, self.layer.bias)


class NaiveNormShift(nn.Module):
    def __init__(self, layer: nn.GroupNorm | nn.LayerNorm) -> None:
        super().__init__()
        self.layer = layer
        layer.weight.requires_grad_(False)
        layer.bias.requires_grad_(False)
        self.delta = nn.Parameter(torch.zeros_like(layer.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if isinstance(layer, nn.GroupNorm):
            return F.group_norm(x, layer.num_groups, layer.weight + self.delta, layer.bias, layer.eps)
        return F.layer_norm(x, layer.normalized_shape, layer.weight + self.delta, layer.bias, layer.eps)


def attach_naive(model: nn.Module) -> list[nn.Parameter]:
    """Wrap every Linear, Conv2d and norm of `model` in place; returns the trainable deltas."""
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear | nn.Conv2d | nn.GroupNorm | nn.LayerNorm)]
    params = []
    for name, module in targets:
        wrapper: nn.Module
        if isinstance(module, nn.GroupNorm | nn.LayerNorm):
            wrapper = NaiveNormShift(module)
        else:
            wrapper = NaiveSpectralShift(module)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, wrapper)
        params.append(wrapper.delta)
    return params
