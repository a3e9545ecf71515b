"""Finding the layers of a UNet or text encoder that a ShiftConfig selects."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

from svdiff.config import ShiftConfig
from svdiff.layers import layer_weight

Kind = Literal["linear", "conv", "embedding", "norm"]
Group = Literal["1d", "2d", "4d"]
GROUP_OF_KIND: dict[str, Group] = {"linear": "2d", "embedding": "2d", "conv": "4d", "norm": "1d"}

TEXT_ENCODER_COMPONENTS = ("text_encoder", "text_encoder_2")
CROSS_ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


class UnsupportedModuleError(TypeError):
    """A weighted layer that spectral shifts cannot wrap."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer to shift: `name` is relative to its component, `length` is how many values its delta holds."""

    component: str
    name: str
    kind: Kind
    length: int

    @property
    def key(self) -> str:
        return f"{self.component}.{self.name}"

    @property
    def group(self) -> Group:
        return GROUP_OF_KIND[self.kind]


def layer_kind(name: str, module: nn.Module) -> Kind | None:
    """The kind of a leaf layer, None for a layer without weights to shift; raises for one it cannot handle."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise UnsupportedModuleError(f"{name}: Conv2d with groups={module.groups} is not supported")
        return "conv"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if isinstance(module, nn.GroupNorm | nn.LayerNorm):
        return "norm" if getattr(module, "weight", None) is not None else None
    if isinstance(module, nn.Conv1d | nn.Conv3d | nn.ConvTranspose2d | nn.Bilinear):
        raise UnsupportedModuleError(f"{name}: {type(module).__name__} layers are not supported")
    return None


def _length(kind: Kind, module: nn.Module) -> int:
    shape = tuple(layer_weight(module).shape)
    if kind == "norm":
        return shape[0]
    return min(shape[0], math.prod(shape[1:]))


def _in_blocks(name: str, config: ShiftConfig) -> bool:
    if config.blocks is None:
        return True
    block = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}.get(name.split(".")[0])
    return block in config.blocks


def _is_cross_attention(name: str, parents: dict[str, nn.Module]) -> bool:
    for projection in CROSS_ATTENTION_PROJECTIONS:
        suffix = "." + projection
        if name.endswith(suffix):
            attention = parents.get(name[: -len(suffix)])
            return bool(getattr(attention, "is_cross_attention", False))
    return False


def _selected(component: str, name: str, kind: Kind, config: ShiftConfig, parents: dict[str, nn.Module]) -> bool:
    is_text = component in TEXT_ENCODER_COMPONENTS
    if is_text and not config.text_encoder:
        return False
    if not is_text and not _in_blocks(name, config):
        return False
    target = config.target
    if target == "all":
        return True
    if target == "norm":
        return kind == "norm"
    if target == "linear":
        return kind in ("linear", "embedding")
    if target == "conv":
        return kind == "conv"
    if is_text:
        return True  # the attention subsets concern the UNet; a text encoder is shifted whole
    if not _is_cross_attention(name, parents):
        return False
    return target == "cross_attention" or name.endswith((".to_k", ".to_v"))


def plan_layers(component: str, model: nn.Module, config: ShiftConfig) -> list[LayerSpec]:
    """Every layer of `model` that `config` selects, in module order. Works on the meta device too."""
    parents = dict(model.named_modules())
    specs = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        kind = layer_kind(name, module)
        if kind is not None and _selected(component, name, kind, config, parents):
            specs.append(LayerSpec(component, name, kind, _length(kind, module)))
    return specs
