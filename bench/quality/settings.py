"""What the benchmark trains and samples, fixed before any result was seen.

Recipe learning rates (from the recipes and the base model's own training, never from test metrics); the
benchmark then calibrates each one on a subject it never scores (bench/quality/calibrate.py):
- SVDiff: `svdiff.TrainConfig` defaults, 1e-3 for 2-D/4-D shifts and 1e-6 for 1-D norm shifts (the paper's).
- Full fine-tuning (DreamBooth): 5e-6 for SD v1.x, which was pre-trained at a peak lr of 1e-4, i.e. 1/20 of it.
  The tiny base was pre-trained at a peak of 8e-4 (basemodel/train_unet.py), so the same ratio gives 4e-5.
  UNet and text encoder both train, because SVDiff shifts both.
- LoRA rank 4 (PEFT, alpha = rank, Gaussian init, as diffusers' DreamBooth-LoRA script): 1e-4, the standard
  value, on the attention projections of the UNet (to_q/to_k/to_v/to_out.0) and of the text encoder
  (q/k/v/out_proj), since SVDiff trains the text encoder too.
Everything else comes from `svdiff.TrainConfig` for all three: AdamW betas (0.9, 0.999), weight decay 1e-2,
gradient clipping at 1.0, batch 1 plus one prior image, prior weight 1.0, prompts, flips, the seed (so all three
see the same photos, noise and timesteps at every step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from basemodel import DEFAULT_GUIDANCE, DEFAULT_STEPS


@dataclass(frozen=True)
class Settings:
    subjects: tuple[str, ...] = ("purple-checkered-star", "orange-ringed-square", "white-dotted-heart")
    pair: tuple[str, str] = ("purple-checkered-star", "orange-ringed-square")  # differ in shape, colour, pattern
    photos: int = 4  # training photos per subject
    steps: int = 400  # for every method and every run
    num_class_images: int = 100  # prior images per class word, made once by the base model and cached
    svdiff_lr: float = 1e-3  # 2-D/4-D shifts; 1-D norm shifts train at svdiff.TrainConfig's ratio to it
    full_lr: float = 4e-5
    lora_lr: float = 1e-4
    lora_rank: int = 4
    context_samples: int = 8  # per context prompt (6 prompts per subject)
    drift_samples: int = 16
    pair_samples: int = 32  # per side-by-side prompt (2 prompts)
    sample_steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    seed: int = 0
    grid_samples: int = 8  # images per grid row
    base_eval_samples: int = 64  # basemodel.evaluate's prompt following of the base model, for context
    calibrate: bool = True  # search each method's rate on bench.quality.calibrate.CALIBRATION_SUBJECT first
    quick: bool = False


FULL = Settings()
QUICK = replace(FULL, subjects=FULL.subjects[:1], steps=3, num_class_images=4, context_samples=2, drift_samples=2,
                pair_samples=2, sample_steps=4, grid_samples=2, base_eval_samples=4, quick=True)
