"""PEFT-style invariants of the spectral-shift layers on tiny CPU models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from svdiff import NormScaleShift, ShiftConfig, SpectralShiftModel, UnsupportedModuleError, attach
from svdiff.layers import SpectralShiftMatrix
from tests.svdiff.conftest import random_shifts
from tests.svdiff.tiny import randomize_norms, tiny_text_encoder, tiny_unet, token_ids, unet_inputs


def forward(model: SpectralShiftModel) -> tuple[torch.Tensor, torch.Tensor]:
    sample, timesteps, context = unet_inputs()
    noise = model.components["unet"](sample, timesteps, context).sample
    hidden = model.components["text_encoder"](token_ids()).last_hidden_state
    return noise, hidden


def test_zero_shifts_give_identical_outputs(svd_cache):
    unet, text_encoder = tiny_unet(), tiny_text_encoder()
    randomize_norms(unet, text_encoder)
    sample, timesteps, context = unet_inputs()
    with torch.no_grad():
        before = unet(sample, timesteps, context).sample, text_encoder(token_ids()).last_hidden_state
        model = attach({"unet": unet, "text_encoder": text_encoder}, cache=svd_cache)
        after = forward(model)
    assert torch.equal(before[0], after[0])
    assert torch.equal(before[1], after[1])


def test_zero_shifts_identical_in_training_forward(shifted):
    with torch.no_grad():
        reference = forward(shifted)
    noise, hidden = forward(shifted)  # grad-enabled: the fast training path
    torch.testing.assert_close(noise, reference[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden, reference[1], rtol=1e-5, atol=1e-5)


def test_only_shifts_receive_gradients(shifted, make_shifts):
    shifted.load_shifts(make_shifts(shifted))
    noise, hidden = forward(shifted)
    (noise.square().mean() + hidden.square().mean()).backward()
    shift_params = {id(p) for p in shifted.parameters()}
    for component in shifted.components.values():
        for name, param in component.named_parameters():
            if id(param) in shift_params:
                continue
            assert not param.requires_grad and param.grad is None, name
    grads = [p.grad for p in shifted.parameters()]
    assert all(g is not None for g in grads)
    assert sum(int(g.abs().sum() > 0) for g in grads if g is not None) > 0.9 * len(grads)


def _run(model: SpectralShiftModel, mode: str) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    for layer in model.layers.values():
        if isinstance(layer, SpectralShiftMatrix):
            layer.forward_mode = mode  # type: ignore[assignment]
        layer.delta.grad = None
    noise, hidden = forward(model)
    (noise.square().mean() + hidden.square().mean()).backward()
    return noise.detach(), hidden.detach(), [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["factors", "auto"])
def test_fast_forward_equals_rebuild(shifted, make_shifts, mode):
    shifted.load_shifts(make_shifts(shifted))
    noise, hidden, grads = _run(shifted, "rebuild")
    fast_noise, fast_hidden, fast_grads = _run(shifted, mode)
    torch.testing.assert_close(fast_noise, noise, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast_hidden, hidden, rtol=1e-4, atol=1e-5)
    for fast, slow in zip(fast_grads, grads, strict=True):
        torch.testing.assert_close(fast, slow, rtol=1e-3, atol=1e-6)


def test_auto_mode_uses_both_paths_by_input_size(shifted):
    convs = [layer for key, layer in shifted.layers.items() if key.endswith("conv1")]
    assert convs
    conv = convs[0]
    assert conv._factorized_is_cheaper(tokens=10_000)  # 3x3 conv: factors cost ~(1 + 1/9) of the base
    square = next(layer for key, layer in shifted.layers.items() if key.endswith("attn1.to_q"))
    assert not square._factorized_is_cheaper(tokens=10_000)  # square matrix, many tokens: rebuild
    assert square._factorized_is_cheaper(tokens=1)  # a single token: the factors


def test_merged_equals_unmerged(shifted, make_shifts):
    shifts = make_shifts(shifted)
    shifted.load_shifts(shifts)
    with torch.no_grad():
        unmerged = forward(shifted)
        shifted.merge()
        merged = forward(shifted)
    torch.testing.assert_close(merged[0], unmerged[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged[1], unmerged[1], rtol=1e-5, atol=1e-5)


def test_merge_scale_zero_is_base_and_restore_is_exact(shifted, make_shifts):
    base = {n: p.clone() for c in shifted.components.values() for n, p in c.named_parameters() if "delta" not in n}
    shifted.merge(make_shifts(shifted), scale=1.0)
    changed = {n: p for c in shifted.components.values() for n, p in c.named_parameters() if "delta" not in n}
    assert any(not torch.equal(changed[n], base[n]) for n in base)
    shifted.restore()
    for c in shifted.components.values():
        for name, param in c.named_parameters():
            if "delta" not in name:
                assert torch.equal(param, base[name]), name
    with torch.no_grad():
        reference = forward(shifted)
        shifted.merge(make_shifts(shifted), scale=0.0)
        assert torch.equal(forward(shifted)[0], reference[0])


def test_merge_refuses_non_finite_shifts_and_changes_nothing(shifted, make_shifts):
    shifts = make_shifts(shifted)
    key = sorted(shifts)[len(shifts) // 2]
    shifts[key][0] = float("nan")
    with torch.no_grad():
        reference = forward(shifted)
        with pytest.raises(ValueError, match="non-finite"):
            shifted.merge(shifts)
        assert not shifted.merged
        assert torch.equal(forward(shifted)[0], reference[0])


def test_double_merge_and_double_attach_raise(shifted):
    shifted.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        shifted.merge()
    with pytest.raises(RuntimeError, match="already carries"):
        attach({"unet": shifted.components["unet"]})


def _one_by_one(model: SpectralShiftModel, rows: list[dict[str, torch.Tensor] | None], sample: torch.Tensor,
                timesteps: torch.Tensor, context: torch.Tensor,
                ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample alone through the model with its shifts merged: what a per-sample batch must equal."""
    unet, text_encoder = model.components["unet"], model.components["text_encoder"]
    noise, hidden = [], []
    with torch.no_grad():
        for i, shifts in enumerate(rows):
            if shifts is not None:
                model.merge(shifts)
            noise.append(unet(sample[i : i + 1], timesteps[i : i + 1], context[i : i + 1]).sample)
            hidden.append(text_encoder(ids[i : i + 1]).last_hidden_state)
            model.restore()
    return torch.cat(noise), torch.cat(hidden)


def test_per_sample_batch_equals_one_by_one(shifted):
    first, second = random_shifts(shifted, seed=1), random_shifts(shifted, seed=2)
    sample, timesteps, context = unet_inputs(batch=3)
    ids = token_ids(batch=2).repeat(2, 1)[:3]
    unet, text_encoder = shifted.components["unet"], shifted.components["text_encoder"]
    expected_noise, expected_hidden = _one_by_one(shifted, [first, second, None], sample, timesteps, context, ids)
    with torch.no_grad(), shifted.per_sample([first, second, None]):
        noise = unet(sample, timesteps, context).sample
        hidden = text_encoder(ids).last_hidden_state
        doubled = unet(sample.repeat(2, 1, 1, 1), timesteps.repeat(2), context.repeat(2, 1, 1)).sample
    torch.testing.assert_close(noise, expected_noise, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hidden, expected_hidden, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(doubled, expected_noise.repeat(2, 1, 1, 1), rtol=1e-4, atol=1e-5)
    assert all(layer.per_sample_delta is None for layer in shifted.layers.values())


def test_per_sample_without_exact_factors_adds_the_change_to_the_base(shifted):
    """Where the factors miss part of W (a large SVD residual), the per-sample forward keeps the base layer's
    own output and adds only the shift's change."""
    matrices = [layer for layer in shifted.layers.values() if isinstance(layer, SpectralShiftMatrix)]
    for layer in matrices:
        layer.rel_residual = 1.0
    assert not any(layer.factors_exact for layer in matrices)
    first, second = random_shifts(shifted, seed=3), random_shifts(shifted, seed=4)
    sample, timesteps, context = unet_inputs(batch=2)
    ids = token_ids(batch=2)
    expected = _one_by_one(shifted, [first, second], sample, timesteps, context, ids)
    with torch.no_grad(), shifted.per_sample([first, second]):
        noise = shifted.components["unet"](sample, timesteps, context).sample
        hidden = shifted.components["text_encoder"](ids).last_hidden_state
    torch.testing.assert_close(noise, expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(hidden, expected[1], rtol=1e-4, atol=1e-5)


def test_per_sample_values_are_kept_within_a_block_and_dropped_after(shifted):
    first, second = random_shifts(shifted, seed=5), random_shifts(shifted, seed=6)
    sample, timesteps, context = unet_inputs(batch=2)
    ids = token_ids(batch=2)
    unet = shifted.components["unet"]
    layer = next(iter(shifted.layers.values()))
    with torch.no_grad():
        with shifted.per_sample([first, second]):
            once = unet(sample, timesteps, context).sample
            assert layer._per_sample_cache  # computed once, reused by every later forward of the block
            twice = unet(sample, timesteps, context).sample
        assert not layer._per_sample_cache
        with shifted.per_sample([second, first]):  # new shifts: nothing of the first block is reused
            swapped = unet(sample, timesteps, context).sample
    assert torch.equal(once, twice)
    expected = _one_by_one(shifted, [second, first], sample, timesteps, context, ids)[0]
    torch.testing.assert_close(swapped, expected, rtol=1e-4, atol=1e-5)


def test_per_sample_shifts_that_need_gradients_get_them_on_every_pass(shifted):
    shifts = [{k: v.requires_grad_() for k, v in random_shifts(shifted, seed=s).items()} for s in (7, 8)]
    sample, timesteps, context = unet_inputs(batch=2)
    unet = shifted.components["unet"]
    grads = []
    with shifted.per_sample(list(shifts)):
        for _ in range(2):  # values that carry a graph are rebuilt per forward, never reused after a backward
            unet(sample, timesteps, context).sample.square().mean().backward()
            grads.append({k: v.grad.clone() for k, v in shifts[0].items() if v.grad is not None})
            for s in shifts:
                for v in s.values():
                    v.grad = None
    assert len(grads[0]) > 0.9 * len([k for k in shifts[0] if k.startswith("unet")])
    for key, grad in grads[0].items():
        torch.testing.assert_close(grads[1][key], grad)


def test_detach_restores_original_modules_and_flags(svd_cache, make_shifts):
    unet = tiny_unet()
    unet.conv_in.requires_grad_(False)
    flags = {name: p.requires_grad for name, p in unet.named_parameters()}
    model = attach({"unet": unet}, cache=svd_cache)
    model.merge(make_shifts(model))
    model.detach()
    assert not any(isinstance(m, SpectralShiftMatrix | NormScaleShift) for m in unet.modules())
    assert isinstance(unet.conv_in, nn.Conv2d)
    assert {name: p.requires_grad for name, p in unet.named_parameters()} == flags


def test_norm_shift_is_additive_without_relu(shifted):
    key, layer = next((k, v) for k, v in shifted.layers.items() if isinstance(v, NormScaleShift))
    gamma = layer.base_layer.weight.detach().clone()
    shift = -gamma * 3  # would be clipped by a relu
    shifted.merge({key: shift})
    torch.testing.assert_close(layer.base_layer.weight, gamma - 3 * gamma)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (ShiftConfig(target="cross_attention", text_encoder=False), {"attn2.to_q", "attn2.to_k", "attn2.to_v",
                                                                    "attn2.to_out.0"}),
        (ShiftConfig(target="cross_attention_kv", text_encoder=False), {"attn2.to_k", "attn2.to_v"}),
    ],
)
def test_attention_subsets(svd_cache, config, expected):
    model = attach({"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}, config, cache=svd_cache)
    suffixes = {key.split(".transformer_blocks.0.")[1] for key in model.layers}
    assert suffixes == expected
    assert all(k.startswith("unet.") for k in model.layers)


def test_kind_and_block_subsets(svd_cache):
    kinds = {}
    for target in ("norm", "linear", "conv"):
        model = attach({"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}, ShiftConfig(target=target),
                       cache=svd_cache)
        kinds[target] = {spec.kind for spec in model.specs}
    assert kinds == {"norm": {"norm"}, "linear": {"linear", "embedding"}, "conv": {"conv"}}
    model = attach({"unet": tiny_unet()}, ShiftConfig(blocks=("up",)), cache=svd_cache)
    assert model.layers and all(k.startswith("unet.up_blocks.") for k in model.layers)


def test_text_encoder_off_leaves_it_untouched(svd_cache):
    text_encoder = tiny_text_encoder()
    model = attach({"unet": tiny_unet(), "text_encoder": text_encoder}, ShiftConfig(text_encoder=False),
                   cache=svd_cache)
    assert all(k.startswith("unet.") for k in model.layers)
    assert not any(isinstance(m, SpectralShiftMatrix | NormScaleShift) for m in text_encoder.modules())


def test_unsupported_layer_and_bad_options_raise(svd_cache):
    unet = tiny_unet()
    unet.conv_in = nn.Conv2d(4, 16, 3, padding=1, groups=2)
    with pytest.raises(UnsupportedModuleError, match=r"conv_in.*groups=2"):
        attach({"unet": unet}, cache=svd_cache)
    with pytest.raises(ValueError, match="target must be one of"):
        ShiftConfig(target="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="blocks must be"):
        ShiftConfig(blocks=("left",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown component"):
        attach({"vae": tiny_unet()}, cache=svd_cache)
