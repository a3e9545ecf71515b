"""Combining checkpoints, and the SVD cache."""

from __future__ import annotations

import time

import pytest
import torch

from svdiff import SVDCache, attach, factorize
from svdiff.combine import combine, interpolate, mix_layers
from tests.svdiff.conftest import random_shifts
from tests.svdiff.tiny import tiny_text_encoder, tiny_unet, unet_inputs


def test_sum_and_interpolation_match_the_formula(shifted):
    first, second = random_shifts(shifted, seed=1), random_shifts(shifted, seed=2)
    key = next(k for k in first if hasattr(shifted.layers[k], "s"))
    layer = shifted.layers[key]
    summed = combine([first, second])
    shifted.merge(summed)
    expected = layer.base_weight.float() + ((layer.U * (torch.relu(layer.s + first[key] + second[key]) - layer.s))
                                            @ layer.Vh).view(layer.base_weight.shape)
    torch.testing.assert_close(layer.base_layer.weight, expected)
    shifted.restore()
    mixed = interpolate(first, second, 0.25)
    torch.testing.assert_close(mixed[key], 0.25 * first[key] + 0.75 * second[key])
    with pytest.raises(ValueError, match="weights"):
        combine([first, second], [1.0])


def test_scaled_combination_equals_merge_with_scale(shifted):
    shifts = random_shifts(shifted, seed=3)
    sample, timesteps, context = unet_inputs()
    unet = shifted.components["unet"]
    with torch.no_grad():
        shifted.merge(shifts, scale=0.5)
        scaled = unet(sample, timesteps, context).sample
        shifted.restore()
        shifted.merge(combine([shifts], [0.5]))
        combined = unet(sample, timesteps, context).sample
    torch.testing.assert_close(scaled, combined)


def test_mix_layers_takes_matching_layers_from_other(shifted):
    subject, style = random_shifts(shifted, seed=4), random_shifts(shifted, seed=5)
    mixed = mix_layers(subject, style, ["unet.up_blocks.*"])
    for key, tensor in mixed.items():
        source = style if key.startswith("unet.up_blocks.") else subject
        assert torch.equal(tensor, source[key])
    with pytest.raises(ValueError, match="no layer matches"):
        mix_layers(subject, style, ["unet.nowhere.*"])


def test_second_attach_reads_the_cache(svd_cache):
    first = attach({"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}, cache=svd_cache)
    assert first.stats.computed > 0 and first.stats.cached == 0
    started = time.perf_counter()
    second = attach({"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}, cache=svd_cache)
    assert time.perf_counter() - started < 30
    assert second.stats.computed == 0 and second.stats.cached == first.stats.computed
    for key, layer in first.layers.items():
        if hasattr(layer, "U"):
            assert torch.equal(layer.U, second.layers[key].U)


def test_corrupt_cache_entry_is_recomputed(svd_cache):
    model = attach({"unet": tiny_unet()}, cache=svd_cache)
    files = sorted(svd_cache.rglob("*.safetensors"))
    files[0].write_bytes(b"garbage")
    again = attach({"unet": tiny_unet()}, cache=svd_cache)
    assert again.stats.computed == 1
    assert model.fingerprint == again.fingerprint


def test_factors_reconstruct_the_weight_to_float32_precision():
    weight = torch.randn(64, 32, 3, 3)
    factors = factorize(weight)
    rebuilt = (factors.U * factors.s) @ factors.Vh
    torch.testing.assert_close(rebuilt.view_as(weight), weight, rtol=1e-5, atol=1e-5)
    assert factors.rel_residual < 1e-6
    assert factors.U.shape == (64, 64) and factors.Vh.shape == (64, 288)


def test_cache_store_and_load(tmp_path):
    cache = SVDCache(tmp_path)
    factors = factorize(torch.randn(8, 5))
    cache.store("abc", "layer.0", factors)
    loaded = cache.load("abc", "layer.0")
    assert loaded is not None and torch.equal(loaded.Vh, factors.Vh)
    assert cache.load("abc", "layer.1") is None
