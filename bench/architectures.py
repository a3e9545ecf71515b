"""Stable Diffusion shaped models built from configs (no weights), for the benchmarks."""

from __future__ import annotations

from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

CROSS_DOWN = "CrossAttnDownBlock2D"
CROSS_UP = "CrossAttnUpBlock2D"


def sd15_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=(CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, "DownBlock2D"),
        up_block_types=("UpBlock2D", CROSS_UP, CROSS_UP, CROSS_UP),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    )


def clip_vit_l14_text() -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu",
    ))


def sdxl_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", CROSS_DOWN, CROSS_DOWN),
        up_block_types=(CROSS_UP, CROSS_UP, "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816, norm_num_groups=32,
    )


def openclip_bigg_text() -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
    ))


def cpu_bench_unet(cross_attention_dim: int = 768) -> UNet2DConditionModel:
    """SD-shaped, sized for a 2-core CPU: channels 64-128-256-256, meant for 32x32 latents."""
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(64, 128, 256, 256),
        down_block_types=(CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, "DownBlock2D"),
        up_block_types=("UpBlock2D", CROSS_UP, CROSS_UP, CROSS_UP),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=32,
    )
