"""Checkpoint files: round trip, size, and clear errors for files made for another model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as load_tensors

from svdiff import ShiftConfig, attach
from svdiff.checkpoint import (
    Checkpoint,
    CheckpointError,
    apply_checkpoint,
    check_compatible,
    deserialize,
    load_checkpoint,
    save_checkpoint,
    serialize,
)
from tests.svdiff.tiny import randomize_norms, tiny_text_encoder, tiny_unet


def _checkpoint(model, shifts):
    model.load_shifts(shifts)
    return Checkpoint.from_model(model, "tiny-test", subjects=[{"token": "sks", "class_word": "dog"}],
                                 training={"steps": 3, "lr": 1e-3})


def test_round_trip_float32_is_exact_and_float16_close(shifted, make_shifts, tmp_path):
    checkpoint = _checkpoint(shifted, make_shifts(shifted))
    size = save_checkpoint(checkpoint, tmp_path / "a.safetensors", dtype="float32")
    assert size == (tmp_path / "a.safetensors").stat().st_size
    loaded = load_checkpoint(tmp_path / "a.safetensors")
    assert loaded.shifts.keys() == checkpoint.shifts.keys()
    for key, tensor in checkpoint.shifts.items():
        assert torch.equal(loaded.shifts[key], tensor)
    assert loaded.metadata.subjects == [{"token": "sks", "class_word": "dog"}]
    assert loaded.metadata.training == {"lr": 1e-3, "steps": 3}
    assert loaded.metadata.base_fingerprints == shifted.stats.fingerprints
    assert loaded.metadata.config == shifted.config
    half = deserialize(serialize(checkpoint))
    for key, tensor in checkpoint.shifts.items():
        torch.testing.assert_close(half.shifts[key], tensor, rtol=1e-3, atol=1e-6)


def test_file_holds_only_shifts_in_few_tensors(shifted, make_shifts):
    data = serialize(_checkpoint(shifted, make_shifts(shifted)))
    tensors = load_tensors(data)
    assert set(tensors) == {"unet.1d", "unet.2d", "unet.4d", "text_encoder.1d", "text_encoder.2d"}
    assert sum(t.numel() for t in tensors.values()) == shifted.num_values()
    assert all(t.dtype == torch.float16 for t in tensors.values())
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert json.loads(header["__metadata__"]["groups"])["unet.4d"] == tensors["unet.4d"].numel()


def test_loaded_checkpoint_reproduces_the_model(shifted, make_shifts):
    checkpoint = _checkpoint(shifted, make_shifts(shifted))
    data = serialize(checkpoint, dtype="float32")
    shifted.zero_()
    apply_checkpoint(shifted, deserialize(data))
    for key, tensor in checkpoint.shifts.items():
        assert torch.equal(shifted.layers[key].delta.detach(), tensor)


def test_fingerprint_mismatch_raises(shifted, make_shifts, svd_cache):
    checkpoint = deserialize(serialize(_checkpoint(shifted, make_shifts(shifted))))
    other = attach({"unet": tiny_unet(seed=7), "text_encoder": tiny_text_encoder(seed=7)}, cache=svd_cache)
    with pytest.raises(CheckpointError, match="another base model"):
        check_compatible(checkpoint, other)


def test_shape_mismatch_raises(shifted, make_shifts):
    checkpoint = deserialize(serialize(_checkpoint(shifted, make_shifts(shifted))))
    key = next(iter(checkpoint.shifts))
    checkpoint.shifts[key] = torch.zeros(checkpoint.shifts[key].numel() + 1)
    with pytest.raises(CheckpointError, match=f"{key}: shape"):
        check_compatible(checkpoint, shifted)


def test_missing_component_raises(shifted, make_shifts, svd_cache):
    checkpoint = _checkpoint(shifted, make_shifts(shifted))
    unet, text_encoder = tiny_unet(), tiny_text_encoder()
    randomize_norms(unet, text_encoder)
    unet_only = attach({"unet": unet, "text_encoder": text_encoder}, ShiftConfig(text_encoder=False), cache=svd_cache)
    with pytest.raises(CheckpointError, match="text_encoder"):
        check_compatible(checkpoint, unet_only)


@pytest.mark.parametrize("data", [b"", b"not a checkpoint", b"\x10\x00\x00\x00\x00\x00\x00\x00{}"])
def test_garbage_raises_checkpoint_error(data):
    with pytest.raises(CheckpointError):
        deserialize(data)


def test_foreign_safetensors_and_corrupt_layout_raise(shifted, make_shifts):
    from safetensors.torch import save

    with pytest.raises(CheckpointError, match="not an SVDiff checkpoint"):
        deserialize(save({"w": torch.zeros(3)}))
    data = serialize(_checkpoint(shifted, make_shifts(shifted)))
    tampered = data.replace(b'"format_version":"1"', b'"format_version":"9"')
    with pytest.raises(CheckpointError, match="newer"):
        deserialize(tampered)


def test_non_finite_or_overflowing_shifts_are_not_saved(shifted, make_shifts):
    shifts = make_shifts(shifted)
    key = next(iter(shifts))
    shifts[key][0] = 1e6  # beyond float16
    with pytest.raises(CheckpointError, match="overflow"):
        serialize(_checkpoint(shifted, shifts))
