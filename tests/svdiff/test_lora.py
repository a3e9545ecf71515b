"""LoRA export: diffusers loads it, full rank equals the merge, rank r meets the Eckart-Young bound."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as load_tensors

from svdiff import ShiftConfig, attach, pipeline_components
from svdiff.layers import SpectralShiftConv2d, SpectralShiftLinear
from svdiff.lora import export_lora
from tests.svdiff.conftest import random_shifts
from tests.svdiff.tiny import tiny_pipeline

MATRIX_ONLY = ShiftConfig(target="all")


def _exportable(model, shifts):
    return {k: v for k, v in shifts.items() if isinstance(model.layers[k], SpectralShiftLinear | SpectralShiftConv2d)}


def _images(pipe, prompt="a dog"):
    return pipe(prompt, num_inference_steps=2, height=16, width=16, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_full_rank_lora_loaded_by_diffusers_equals_merge(tmp_path):
    pipe = tiny_pipeline(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    model = attach(pipeline_components(pipe), MATRIX_ONLY, cache=tmp_path / "svd")
    shifts = _exportable(model, random_shifts(model, scale=0.2))
    export = export_lora(model, shifts, rank=10_000, dtype=torch.float32)
    assert export.error == 0.0
    model.merge(shifts)
    merged = _images(pipe)
    model.detach()  # the plain base pipeline again
    base = _images(pipe)
    pipe.load_lora_weights(load_tensors(export.to_bytes()))
    with_lora = _images(pipe)
    assert not torch.allclose(torch.from_numpy(base), torch.from_numpy(merged), atol=1e-3)
    torch.testing.assert_close(torch.from_numpy(with_lora), torch.from_numpy(merged), rtol=1e-3, atol=1e-3)


def test_lora_keys_cover_unet_and_text_encoder_and_report_dropped(shifted, make_shifts):
    shifts = make_shifts(shifted)
    export = export_lora(shifted, shifts, rank=2)
    components = {key.split(".", 1)[0] for key in export.state_dict}
    assert components == {"unet", "text_encoder"}
    assert all(t.shape[0] <= 2 or k.endswith("lora_B.weight") for k, t in export.state_dict.items())
    assert export.dropped and all("norm" in k or "embedding" in k for k in export.dropped)


@pytest.mark.parametrize("rank", [1, 3])
def test_rank_r_meets_eckart_young(shifted, make_shifts, rank):
    shifts = _exportable(shifted, make_shifts(shifted))
    export = export_lora(shifted, shifts, rank=rank, dtype=torch.float32)
    total_error, best_error = 0.0, 0.0
    for key, delta in shifts.items():
        layer = shifted.layers[key]
        change = (layer.U * layer.gain(delta)) @ layer.Vh  # exact Delta W, (c_out, n)
        down = export.state_dict.get(f"{key}.lora_A.weight")
        up = export.state_dict.get(f"{key}.lora_B.weight")
        approx = up.flatten(1) @ down.flatten(1) if down is not None else torch.zeros_like(change)
        total_error += float((change - approx).square().sum())
        singular = torch.linalg.svdvals(change.double())  # best rank-r error, from an independent SVD
        best_error += float(singular[rank:].square().sum())
    assert total_error**0.5 == pytest.approx(export.error, rel=1e-3, abs=1e-6)
    assert total_error**0.5 <= best_error**0.5 * (1 + 1e-3) + 1e-6


def test_invalid_rank_and_non_finite_shifts_raise(shifted, make_shifts):
    shifts = make_shifts(shifted)
    with pytest.raises(ValueError, match="rank"):
        export_lora(shifted, shifts, rank=0)
    key = next(k for k in shifts if isinstance(shifted.layers[k], SpectralShiftLinear))
    shifts[key][0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        export_lora(shifted, shifts, rank=2)
