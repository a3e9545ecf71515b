"""The attention processor that records subject-token maps, and the unmix loss."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from svdiff import attach
from svdiff.attention import (
    AttentionCapture,
    CaptureProcessor,
    cross_attention_layers,
    subject_weights,
    token_positions,
    unmix_loss,
)
from svdiff.cutmix import half_masks
from tests.svdiff.tiny import CONTEXT_DIM, tiny_unet, unet_inputs

PROMPT = "a photo of a xq dog on the left and a zv cat on the right"


def _maps(left_map: torch.Tensor, right_map: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """(1, 2, heads, Q) from two (h, w) maps."""
    return torch.stack([left_map.flatten(), right_map.flatten()])[None, :, None].expand(1, 2, heads, -1)


def test_unmix_loss_is_zero_inside_own_halves_and_positive_when_leaking():
    left, right = half_masks(4, 4)
    own = _maps(left * 0.3, right * 0.1)
    collage = torch.tensor([True])
    assert unmix_loss([own], collage, (8, 8)).item() == 0.0
    uniform = torch.full((4, 4), 0.2)
    assert unmix_loss([_maps(uniform, right)], collage, (8, 8)).item() == pytest.approx(0.5, rel=1e-4)  # 1 and 0
    swapped = _maps(right * 0.3, left * 0.1)  # everything on the wrong side: normalized value 2, squared 4
    assert unmix_loss([swapped], collage, (8, 8)).item() == pytest.approx(4.0, rel=1e-4)
    assert unmix_loss([swapped], torch.tensor([False]), (8, 8)).item() == 0.0  # only collages count


def test_unmix_loss_reads_maps_at_every_resolution():
    fine = _maps(*half_masks(4, 4))  # 16 queries over the 8x8 latent: 4x4, all in place
    leak = _maps(torch.ones(2, 2), half_masks(2, 2)[1])  # 2x2: the left token is uniform (1), the right in place (0)
    assert unmix_loss([fine, leak], torch.tensor([True]), (8, 8)).item() == pytest.approx(0.25, rel=1e-4)


def test_token_positions_find_multi_token_words(pipe):
    tokenizer = pipe.tokenizer
    positions = token_positions(tokenizer, PROMPT, "xq")
    ids = tokenizer(PROMPT, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert [ids[i] for i in positions] == tokenizer("xq", add_special_tokens=False).input_ids
    assert len(positions) == 2  # "x", "q</w>": the tiny tokenizer works per character
    with pytest.raises(ValueError, match="not in"):
        token_positions(tokenizer, PROMPT, "mm")
    weights = subject_weights(tokenizer, [PROMPT, "a photo of a xq dog"], [("xq", "zv"), None])
    assert weights.shape == (2, 2, tokenizer.model_max_length)
    assert torch.allclose(weights[0].sum(-1), torch.ones(2)) and weights[1].abs().sum() == 0
    assert set(weights[0, 1].nonzero().flatten().tolist()) == set(token_positions(tokenizer, PROMPT, "zv", last=True))


def test_layer_choice_prefers_coarse_maps_and_falls_back_to_the_coarsest():
    tiny = tiny_unet()  # cross-attention at full latent resolution (down 0, up 1) and at 1/2 (mid)
    assert cross_attention_layers(tiny, 2) == ["mid_block.attentions.0.transformer_blocks.0.attn2"]
    assert cross_attention_layers(tiny, 8) == cross_attention_layers(tiny, 2)  # none that coarse: the coarsest
    assert len(cross_attention_layers(tiny, 1)) == 4
    assert all(name.endswith("attn2") for name in cross_attention_layers(tiny, 1))
    two_levels = UNet2DConditionModel(
        sample_size=8, block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=CONTEXT_DIM,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), attention_head_dim=4,
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=4,
    )
    coarse = cross_attention_layers(two_levels, 2)
    assert {name.split(".")[0] + "." + name.split(".")[1] for name in coarse} == {
        "down_blocks.1", "mid_block.attentions", "up_blocks.0"}
    assert len(cross_attention_layers(two_levels, 1)) > len(coarse)


def test_capture_leaves_outputs_unchanged_and_records_maps(svd_cache):
    unet = tiny_unet()
    sample, timesteps, context = unet_inputs()
    with torch.no_grad():
        reference = unet(sample, timesteps, context).sample
    capture = AttentionCapture(unet, min_downsample=1)
    uniform = torch.full((2, 2, context.shape[1]), 1.0 / context.shape[1])  # each "subject" = every token
    with capture.installed(), torch.no_grad():
        assert all(isinstance(unet.get_submodule(n).processor, CaptureProcessor) for n in capture.layers)
        with capture.recording(uniform) as maps:
            captured = unet(sample, timesteps, context).sample
        unet(sample, timesteps, context)  # outside `recording`: nothing more is kept
    torch.testing.assert_close(captured, reference, rtol=1e-4, atol=1e-5)
    assert len(maps) == len(capture.layers) == len(capture.maps)
    heads = unet.get_submodule(capture.layers[0]).heads
    assert sorted({m.shape[-1] for m in maps}) == [16, 64]  # 4x4 (mid) and 8x8 maps
    assert all(m.shape[:3] == (2, 2, heads) for m in maps)
    for layer_maps in maps:  # rows of a softmax sum to 1, so the mean over all tokens is 1/K everywhere
        torch.testing.assert_close(layer_maps, torch.full_like(layer_maps, 1.0 / context.shape[1]))
    assert all(not isinstance(unet.get_submodule(n).processor, CaptureProcessor) for n in capture.layers)
    assert isinstance(unet.get_submodule(capture.layers[0]).processor, AttnProcessor2_0)


def test_unmix_gradient_reaches_the_key_projection_shifts(svd_cache):
    unet = tiny_unet()
    model = attach({"unet": unet}, cache=svd_cache)
    sample, timesteps, context = unet_inputs(batch=1)
    weights = torch.zeros(1, 2, context.shape[1])
    weights[0, 0, 1], weights[0, 1, 3] = 1.0, 1.0
    capture = AttentionCapture(unet, min_downsample=1)
    with capture.installed(), capture.recording(weights) as maps:
        unet(sample, timesteps, context)
    loss = unmix_loss(maps, torch.tensor([True]), (8, 8))
    loss.backward()
    assert loss.item() > 0
    key_shifts = [model.layers[f"unet.{name}.to_k"].delta for name in capture.layers]
    assert all(delta.grad is not None and delta.grad.abs().sum() > 0 for delta in key_shifts)
