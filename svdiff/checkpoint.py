"""Checkpoint files: only the shifts, packed per group into a few flat safetensors tensors, plus metadata.

Packing matters for size: SD v1.5 has about a thousand shifted layers, and a safetensors header entry per layer
would add ~100 kB to a file of ~800 kB. The layer layout (names and lengths, in order) travels compressed in the
metadata, so loading still checks every layer's name and length against the model.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from svdiff.config import ShiftConfig
from svdiff.model import ShiftMismatchError, Shifts, SpectralShiftModel

FORMAT = "svdiff"
FORMAT_VERSION = 1
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}


class CheckpointError(ValueError):
    """A file that is not a readable SVDiff checkpoint, or one made for another base model."""


@dataclass
class CheckpointMetadata:
    base_model: str
    base_fingerprints: dict[str, str]
    config: ShiftConfig = field(default_factory=ShiftConfig)
    subjects: list[dict[str, str]] = field(default_factory=list)  # [{"token": ..., "class_word": ...}]
    training: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


@dataclass
class Checkpoint:
    shifts: Shifts
    metadata: CheckpointMetadata
    groups: dict[str, str] = field(default_factory=dict)  # layer key -> "1d" | "2d" | "4d"

    @classmethod
    def from_model(cls, model: SpectralShiftModel, base_model: str, *, subjects: list[dict[str, str]] | None = None,
                   training: dict[str, Any] | None = None) -> Checkpoint:
        metadata = CheckpointMetadata(base_model, dict(model.stats.fingerprints), model.config,
                                      list(subjects or []), dict(training or {}))
        groups: dict[str, str] = {spec.key: spec.group for spec in model.specs}
        groups |= {key: "rows" for key in model.token_rows()}
        return cls(model.shifts(), metadata, groups)

    def num_values(self) -> int:
        return sum(t.numel() for t in self.shifts.values())


def _encode_layout(layout: dict[str, list[tuple[str, int]]]) -> str:
    return base64.b64encode(zlib.compress(json.dumps(layout, separators=(",", ":")).encode(), 9)).decode()


def _decode_layout(text: str) -> dict[str, list[tuple[str, int]]]:
    return {group: [(name, int(n)) for name, n in rows]
            for group, rows in json.loads(zlib.decompress(base64.b64decode(text))).items()}


def serialize(checkpoint: Checkpoint, *, dtype: str = "float16") -> bytes:
    """The checkpoint as safetensors bytes, one flat tensor per component and group (e.g. `unet.2d`)."""
    if dtype not in STORAGE_DTYPES:
        raise CheckpointError(f"dtype must be one of {sorted(STORAGE_DTYPES)}, got {dtype!r}")
    storage = STORAGE_DTYPES[dtype]
    layout: dict[str, list[tuple[str, int]]] = {}
    parts: dict[str, list[torch.Tensor]] = {}
    for key, tensor in checkpoint.shifts.items():
        values = tensor.detach().float().flatten().cpu()
        if not torch.isfinite(values).all() or not torch.isfinite(values.to(storage)).all():
            raise CheckpointError(f"shift {key} has values that are non-finite or overflow {dtype}")
        group = f"{key.split('.', 1)[0]}.{checkpoint.groups.get(key, 'shifts')}"
        layout.setdefault(group, []).append((key, values.numel()))
        parts.setdefault(group, []).append(values)
    tensors = {group: torch.cat(values).to(storage).contiguous() for group, values in parts.items()}
    meta = checkpoint.metadata
    metadata = {
        "format": FORMAT,
        "format_version": str(meta.format_version),
        "base_model": meta.base_model,
        "base_fingerprints": json.dumps(meta.base_fingerprints, sort_keys=True),
        "shift_config": json.dumps(meta.config.to_dict(), sort_keys=True),
        "subjects": json.dumps(meta.subjects),
        "training": json.dumps(meta.training, sort_keys=True, default=str),
        "groups": json.dumps({group: sum(n for _, n in rows) for group, rows in layout.items()}, sort_keys=True),
        "layout": _encode_layout(layout),
    }
    return save_bytes(tensors, metadata=metadata)


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike[str], *, dtype: str = "float16") -> int:
    """Write the checkpoint file; returns its size in bytes."""
    data = serialize(checkpoint, dtype=dtype)
    with open(path, "wb") as handle:
        handle.write(data)
    return len(data)


def deserialize(data: bytes) -> Checkpoint:
    try:
        tensors = load_bytes(data)
        metadata = _read_metadata(data)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError("not an SVDiff checkpoint (format metadata missing)")
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {version} is newer than this library ({FORMAT_VERSION})")
    try:
        layout = _decode_layout(metadata["layout"])
        shifts: Shifts = {}
        groups: dict[str, str] = {}
        for group, rows in layout.items():
            flat = tensors[group].float()
            if flat.numel() != sum(n for _, n in rows):
                raise CheckpointError(f"group {group} holds {flat.numel()} values, its layout says otherwise")
            for (key, tensor) in zip((k for k, _ in rows), flat.split([n for _, n in rows]), strict=True):
                shifts[key] = tensor.clone()
                groups[key] = group.split(".", 1)[1]
        meta = CheckpointMetadata(
            base_model=metadata["base_model"],
            base_fingerprints=json.loads(metadata["base_fingerprints"]),
            config=ShiftConfig.from_dict(json.loads(metadata["shift_config"])),
            subjects=json.loads(metadata["subjects"]),
            training=json.loads(metadata["training"]),
            format_version=version,
        )
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"corrupt checkpoint metadata: {exc}") from exc
    return Checkpoint(shifts, meta, groups)


def _read_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    return dict(header.get("__metadata__", {}))


def load_checkpoint(source: str | os.PathLike[str] | bytes) -> Checkpoint:
    if isinstance(source, bytes | bytearray):
        return deserialize(bytes(source))
    with open(source, "rb") as handle:
        return deserialize(handle.read())


def check_compatible(checkpoint: Checkpoint, model: SpectralShiftModel) -> None:
    """Raises CheckpointError unless the checkpoint was made for this base model and fits every layer."""
    expected = checkpoint.metadata.base_fingerprints
    actual = model.stats.fingerprints
    for component, value in expected.items():
        if component not in actual:
            raise CheckpointError(f"checkpoint shifts {component}, which this model does not shift")
        if actual[component] != value:
            raise CheckpointError(
                f"checkpoint was made for another base model: {component} fingerprint {value} "
                f"(base {checkpoint.metadata.base_model!r}), this model has {actual[component]}"
            )
    try:
        model.check(checkpoint.shifts, strict=False)
    except ShiftMismatchError as exc:
        raise CheckpointError(str(exc)) from exc


def apply_checkpoint(model: SpectralShiftModel, checkpoint: Checkpoint) -> None:
    """Load a checkpoint's shifts into the model's trainable deltas, after checking it fits."""
    check_compatible(checkpoint, model)
    model.load_shifts(checkpoint.shifts, strict=False)
