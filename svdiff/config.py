"""Which weights get spectral shifts: the subsets of the SVDiff paper (Table 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

Target = Literal["all", "cross_attention", "cross_attention_kv", "norm", "linear", "conv"]
Block = Literal["down", "mid", "up"]

TARGETS: tuple[str, ...] = get_args(Target)
BLOCKS: tuple[str, ...] = get_args(Block)


class ShiftConfigError(ValueError):
    """An option the library cannot honour."""


@dataclass(frozen=True)
class ShiftConfig:
    """Selects the layers that receive shifts.

    `target` picks layer kinds in the UNet: every Linear/Conv2d/norm ("all"), the cross-attention projections
    (q, k, v, out), only their k/v, only 1-D norm scales ("norm"), only 2-D Linear weights ("linear"), or only
    4-D Conv weights ("conv"). The kind filters ("norm", "linear") also apply to the text encoders; the attention
    filters concern the UNet only, and the text encoders, when enabled, are then shifted whole.
    `blocks` restricts the UNet to some of its down/mid/up blocks; None keeps every layer, including conv_in,
    conv_out and the time embedding.
    """

    target: Target = "all"
    blocks: tuple[Block, ...] | None = None
    text_encoder: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ShiftConfigError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.blocks is not None:
            unknown = [b for b in self.blocks if b not in BLOCKS]
            if unknown or not self.blocks:
                raise ShiftConfigError(f"blocks must be a non-empty subset of {BLOCKS}, got {self.blocks!r}")
            object.__setattr__(self, "blocks", tuple(sorted(set(self.blocks), key=BLOCKS.index)))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocks"] = list(self.blocks) if self.blocks is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShiftConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ShiftConfigError(f"unknown shift config fields: {sorted(unknown)}")
        blocks = data.get("blocks")
        return cls(
            target=data.get("target", "all"),
            blocks=tuple(blocks) if blocks is not None else None,
            text_encoder=bool(data.get("text_encoder", True)),
        )
