"""`make bench-size`: shifts per group and checkpoint bytes for the real SD v1.5 and SDXL architectures.

The models are built on the meta device, so no weights are needed; the checkpoint is serialised for real (zeros
of the right lengths, float16), metadata included.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.architectures import clip_vit_l14_text, openclip_bigg_text, sd15_unet, sdxl_unet
from svdiff import ShiftConfig, plan_layers
from svdiff.checkpoint import Checkpoint, CheckpointMetadata, serialize
from svdiff.targets import LayerSpec

GROUP_NAMES = {
    ("unet", "2d"): "UNet Linear (2-D)", ("unet", "4d"): "UNet Conv (4-D)", ("unet", "1d"): "UNet norm (1-D)",
}


def _specs(components: dict[str, nn.Module]) -> list[LayerSpec]:
    return [spec for name, model in components.items() for spec in plan_layers(name, model, ShiftConfig())]


def _checkpoint_bytes(specs: list[LayerSpec], dtype: str) -> int:
    shifts = {spec.key: torch.zeros(spec.length) for spec in specs}
    groups = {spec.key: spec.group for spec in specs}
    fingerprints = {spec.component: "0" * 32 for spec in specs}
    metadata = CheckpointMetadata("runwayml/stable-diffusion-v1-5", fingerprints, ShiftConfig(),
                                  [{"token": "sks", "class_word": "dog"}], {"steps": 500, "lr": 1e-3})
    return len(serialize(Checkpoint(shifts, metadata, groups), dtype=dtype))


def _parameters(components: dict[str, nn.Module]) -> int:
    return sum(p.numel() for model in components.values() for p in model.parameters())


def report(name: str, components: dict[str, nn.Module]) -> int:
    specs = _specs(components)
    rows: dict[str, int] = {}
    for spec in specs:
        label = GROUP_NAMES.get((spec.component, spec.group), f"{spec.component} (all groups)")
        rows[label] = rows.get(label, 0) + spec.length
    total = sum(rows.values())
    fp16, fp32 = _checkpoint_bytes(specs, "float16"), _checkpoint_bytes(specs, "float32")
    print(f"\n{name}: {len(specs)} shifted layers, base parameters {_parameters(components):,}")
    print("| group | values |\n| --- | ---: |")
    for label, count in rows.items():
        print(f"| {label} | {count:,} |")
    print(f"| total | {total:,} |")
    print(f"checkpoint: {fp16:,} bytes in float16, {fp32:,} bytes in float32")
    return fp16


def main() -> None:
    with torch.device("meta"):
        sd15 = {"unet": sd15_unet(), "text_encoder": clip_vit_l14_text()}
        sdxl = {"unet": sdxl_unet(), "text_encoder": clip_vit_l14_text(), "text_encoder_2": openclip_bigg_text()}
    sd15_bytes = report("SD v1.5 (UNet + CLIP ViT-L/14)", sd15)
    report("SDXL (UNet + CLIP ViT-L/14 + OpenCLIP bigG)", sdxl)
    print(f"sd15 checkpoint bytes: {sd15_bytes}")


if __name__ == "__main__":
    main()
