"""SD 2.x and SDXL shaped components (tiny configs): attach, zero-shift identity and merge equivalence."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from svdiff import attach
from tests.svdiff.conftest import random_shifts


def _sdxl_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), cross_attention_dim=24,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 * 6 + 16, norm_num_groups=8,
    ).eval()


def _projection_text_encoder() -> CLIPTextModelWithProjection:
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=12, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )).eval()


def _sdxl_forward(unet: UNet2DConditionModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 8, 8, generator=generator)
    context = torch.randn(2, 5, 24, generator=generator)
    added = {"text_embeds": torch.randn(2, 16, generator=generator), "time_ids": torch.randn(2, 6, generator=generator)}
    return unet(sample, torch.tensor([3, 700]), context, added_cond_kwargs=added).sample


def test_sdxl_unet_and_projection_text_encoder(tmp_path):
    unet, text_encoder_2 = _sdxl_unet(), _projection_text_encoder()
    ids = torch.tensor([[0, 4, 9, 1, 1]])
    with torch.no_grad():
        base_noise = _sdxl_forward(unet)
        base_embeds = text_encoder_2(ids).text_embeds
        model = attach({"unet": unet, "text_encoder_2": text_encoder_2}, cache=tmp_path)
        assert torch.equal(_sdxl_forward(unet), base_noise)
        assert torch.equal(text_encoder_2(ids).text_embeds, base_embeds)
        assert "text_encoder_2.text_projection" in model.layers
        assert any(".add_embedding." in key for key in model.layers)
        model.load_shifts(random_shifts(model))
        unmerged = _sdxl_forward(unet), text_encoder_2(ids).text_embeds
        model.merge()
        torch.testing.assert_close(_sdxl_forward(unet), unmerged[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(text_encoder_2(ids).text_embeds, unmerged[1], rtol=1e-5, atol=1e-5)


def test_sd2_linear_projection_unet(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=24, attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=8,
    ).eval()
    model = attach({"unet": unet}, cache=tmp_path)
    assert type(model.layers["unet.down_blocks.0.attentions.0.proj_in"]).__name__ == "SpectralShiftLinear"
    sample, context = torch.randn(1, 4, 8, 8), torch.randn(1, 5, 24)
    model.load_shifts(random_shifts(model))
    noise = unet(sample, torch.tensor([10]), context).sample
    noise.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
