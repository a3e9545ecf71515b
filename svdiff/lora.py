"""Export spectral shifts as a LoRA that diffusers' `load_lora_weights` reads.

The change a shift makes, Delta W = U diag(relu(s + delta) - s) Vh, is already an SVD: its best rank-r
approximation (Eckart-Young) keeps the r largest |relu(s + delta) - s|, and splits each kept value between the
down (A) and up (B) matrices. Norm-scale (1-D) and embedding shifts, and token rows, have no LoRA form and are left
out; the export says which it dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from safetensors.torch import save as save_bytes

from svdiff.layers import SpectralShiftConv2d, SpectralShiftLinear, SpectralShiftMatrix, layer_weight
from svdiff.model import Shifts, SpectralShiftModel


@dataclass
class LoraExport:
    state_dict: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)  # layers whose shifts LoRA cannot carry
    error: float = 0.0  # Frobenius norm of what the rank cut leaves out, over all exported layers

    def to_bytes(self, metadata: dict[str, str] | None = None) -> bytes:
        return save_bytes({k: v.contiguous() for k, v in self.state_dict.items()}, metadata=metadata or {})


def _split(layer: SpectralShiftMatrix, delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    gain = layer.gain(delta.to(layer.s))
    order = torch.argsort(gain.abs(), descending=True)
    kept, rest = order[:rank], order[rank:]
    root = gain[kept].abs().sqrt()
    down = layer.Vh[kept] * root[:, None]  # (r, n)
    up = layer.U[:, kept] * (torch.sign(gain[kept]) * root)  # (c_out, r)
    return down, up, float(gain[rest].pow(2).sum())


def export_lora(model: SpectralShiftModel, shifts: Shifts, rank: int, *, scale: float = 1.0,
                dtype: torch.dtype = torch.float16) -> LoraExport:
    """The rank-`rank` LoRA of `scale * shifts` on `model`'s base (layers with a zero change are skipped)."""
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    model.check(shifts, strict=False)
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    squared_error = 0.0
    for key, delta in shifts.items():
        layer = model.layers.get(key)  # None for a token row, which has no LoRA form either
        if not isinstance(layer, SpectralShiftLinear | SpectralShiftConv2d):
            if bool(delta.abs().max() > 0):
                dropped.append(key)
            continue
        if not torch.isfinite(delta).all():
            raise ValueError(f"refusing to export non-finite shifts (layer {key})")
        down, up, cut = _split(layer, delta.float() * scale, rank)
        if not bool(up.abs().max() > 0):
            continue
        squared_error += cut
        weight = layer_weight(layer.base_layer)
        if isinstance(layer, SpectralShiftConv2d):
            down = down.view(down.shape[0], *weight.shape[1:])
            up = up.view(*up.shape, 1, 1)
        state[f"{key}.lora_A.weight"] = down.to(dtype).cpu()
        state[f"{key}.lora_B.weight"] = up.to(dtype).cpu()
    return LoraExport(state, dropped, squared_error**0.5)
