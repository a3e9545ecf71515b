"""Progress reports and the resumable state of a training run."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from svdiff.model import Shifts

STATE_VERSION = 1


class Canceled(RuntimeError):
    """A generation or edit stopped because its callback asked it to."""


class TrainStateError(ValueError):
    """A resume state that is unreadable or belongs to another base model or run."""


@dataclass(frozen=True)
class Progress:
    step: int  # steps done, 1-based after the first
    total: int
    loss: float
    elapsed: float  # seconds of training, summed over resumed runs


ProgressCallback = Callable[[Progress], bool | None]  # returning False asks the run to stop


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly: shifts, optimizer, step, RNG (and loss scaler)."""

    step: int
    shifts: Shifts
    optimizer: dict[str, Any]
    generator: torch.Tensor  # torch.Generator.get_state() of the run's one CPU generator
    fingerprint: str  # the base model's
    elapsed: float = 0.0
    losses: list[float] = field(default_factory=list)
    scaler: dict[str, Any] | None = None
    version: int = STATE_VERSION

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(asdict(self), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainState:
        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            state = cls(**raw)
        except Exception as exc:
            raise TrainStateError(f"not a readable training state: {exc}") from exc
        if state.version > STATE_VERSION:
            raise TrainStateError(f"training state version {state.version} is newer than this library")
        return state


def as_state(resume: TrainState | bytes | None) -> TrainState | None:
    if resume is None or isinstance(resume, TrainState):
        return resume
    return TrainState.from_bytes(bytes(resume))
