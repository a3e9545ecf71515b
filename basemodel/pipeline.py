"""Assemble the components into a standard `StableDiffusionPipeline` and save or load it."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from basemodel import BASE_MODEL_PATH
from basemodel.models import make_sample_scheduler


def assemble(
    vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer
) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save(pipeline: StableDiffusionPipeline, path: Path) -> None:
    """Save in float16 (the shipped size budget) through a sibling folder, so readers never see a half-written one."""
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    half = copy.deepcopy(pipeline).to(torch.float16)
    half.save_pretrained(staging, safe_serialization=True)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)


def load(path: Path = BASE_MODEL_PATH) -> StableDiffusionPipeline:
    """The shipped pipeline in float32 on the CPU: the same `from_pretrained` call as any SD checkpoint."""
    pipeline = StableDiffusionPipeline.from_pretrained(path, dtype=torch.float32)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline
