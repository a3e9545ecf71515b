"""What the benchmark trains and samples, fixed before any result on this base model was seen.

Learning rates: each method's grid is centred on a rate, then calibrated (rate and step budget) on a subject of
the scored kind that is never scored (bench/quality/calibrate.py). The centres:
- SVDiff: 3e-3 for 2-D/4-D shifts (the paper's 1e-3 times 3, the rate the previous base model's calibration
  chose), 1-D norm shifts at svdiff.TrainConfig's ratio (the paper's 1e-6 : 1e-3).
- Full fine-tuning (DreamBooth): 1.2e-4. DreamBooth's 5e-6 for SD v1.x is 1/20 of SD's pre-training peak (1e-4);
  the tiny base was pre-trained at a peak of 8e-4, so the same ratio gives 4e-5, and the previous calibration
  chose ten times that: 1.2e-4 is the geometric middle. UNet and text encoder both train, because SVDiff shifts both.
- LoRA rank 4 (PEFT, alpha = rank, Gaussian init, as diffusers' DreamBooth-LoRA script): 2.7e-3, on the attention
  projections of the UNet (to_q/to_k/to_v/to_out.0) and of the text encoder (q/k/v/out_proj), since SVDiff trains
  the text encoder too. It was 3e-4 (the previous base's calibration; 1e-4 is the script's default) until the
  calibration of 2026-12-05 scored every LoRA trial from 3.3e-5 to 9e-4 at 0 on the calibration subject;
  `python -m bench.quality.probe_rate --method lora` there found 2.7e-3 the best of 9e-4, 2.7e-3 and 8.1e-3
  (bench/results/calibrated/probe_lora.md), so the grid is centred on it (bench/results/RECORD.md).
Everything else comes from `svdiff.TrainConfig` for all three: AdamW betas (0.9, 0.999), weight decay 1e-2,
gradient clipping at 1.0, batch 1 plus one prior image, prior weight 1.0, prompts and prompt templates, flips
(every subject of the world is mirror-symmetric), the seed (so all three see the same photos, noise and timesteps
at every step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from basemodel import DEFAULT_GUIDANCE, DEFAULT_STEPS

# The instance prompt's phrasings in the recipe (svdiff.TrainConfig.prompt_templates), fixed before any scored
# run; the ablation "one prompt" trains without them.
from basemodel.recipe import MIX_PHRASINGS, PROMPT_TEMPLATES, TOKEN_ROWS, TOKEN_ROWS_LEARNING_RATE


@dataclass(frozen=True)
class Settings:
    subjects: tuple[str, ...] = ("green-dotted-diamond", "red-striped-cross", "yellow-striped-circle")  # scored
    calibration_subject: str = "purple-dotted-square"  # the scored kind, never scored
    stress_subjects: tuple[str, ...] = ("purple-checkered-star",)  # a pattern the base has never drawn
    pair: tuple[str, str] = ("green-dotted-diamond", "red-striped-cross")  # differ in shape, colour, pattern
    photos: int = 4  # training photos per subject
    steps: int = 200  # the middle of the step grid (100, 200, 400); the calibrated budget replaces it
    num_class_images: int = 100  # prior images per class word, made once by the base model and cached
    svdiff_lr: float = 3e-3  # 2-D/4-D shifts; 1-D norm shifts train at svdiff.TrainConfig's ratio to it
    full_lr: float = 1.2e-4
    lora_lr: float = 2.7e-3
    lora_rank: int = 4
    prompt_templates: tuple[str, ...] = PROMPT_TEMPLATES
    token_rows: bool = TOKEN_ROWS  # SVDiff only: the baselines train their own parameters (full: every row)
    lr_rows: float = TOKEN_ROWS_LEARNING_RATE
    mix_phrasings: tuple[tuple[str, str], ...] = MIX_PHRASINGS  # Cut-Mix collages phrased in both orders
    context_samples: int = 8  # per context prompt (6 prompts per subject)
    # Per context prompt of the calibration subject: 8, as the scored subjects (48 a trial). It was 3 (18 a trial)
    # until the calibrated run on the zero-SNR base chose budgets within that sampling noise which did worse on the
    # scored subjects (bench/results/RECORD.md, 2026-12-05).
    calibration_samples: int = 8
    drift_samples: int = 16
    pair_samples: int = 24  # per side-by-side prompt (2 prompts)
    sample_steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    seed: int = 0
    grid_samples: int = 8  # images per grid row
    base_eval_samples: int = 64  # basemodel.evaluate's prompt following of the base model, for context
    calibrate: bool = True
    ablations: bool = True
    quick: bool = False


FULL = Settings()
QUICK = replace(FULL, subjects=FULL.subjects[:1], stress_subjects=FULL.stress_subjects[:1], steps=2,
                num_class_images=2, context_samples=1, calibration_samples=1, drift_samples=2, pair_samples=1,
                sample_steps=2, grid_samples=2, base_eval_samples=2, quick=True)  # fmt: skip
