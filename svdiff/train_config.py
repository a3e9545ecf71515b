"""Training hyperparameters (saved inside every checkpoint) and the subjects a run learns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from svdiff.config import ShiftConfig
from svdiff.cutmix import (
    COLLAGE_CROPS,
    MIX_FIELDS,
    MIX_PROMPT,
    PRIOR_MIX_FIELDS,
    PRIOR_MIX_PROMPT,
    SUBJECT_PROMPT,
    CollageCrop,
)
from svdiff.data import ImageSource
from svdiff.prior import CLASS_PROMPT

MixedPrecision = Literal["no", "bf16", "fp16"]
MAX_SUBJECTS = 3


class TrainConfigError(ValueError):
    """Settings or subjects a training run cannot use."""


@dataclass
class Subject:
    """One subject: its rare `token`, its `class_word`, and 3 to 5 photos (bytes, paths or PIL images)."""

    token: str
    class_word: str
    images: list[ImageSource]

    def describe(self) -> dict[str, str]:
        return {"token": self.token, "class_word": self.class_word}


@dataclass
class TrainConfig:
    """Defaults follow the paper for SD 1.x at 512 px (METHOD.md section 2); tests shrink steps and counts."""

    steps: int = 500
    lr: float = 1e-3  # 2-D/4-D singular-value shifts
    lr_norm: float = 1e-6  # 1-D norm-scale shifts
    weight_decay: float = 1e-2  # AdamW; pulls shifts gently back towards the base model
    batch_size: int = 1  # instance samples per step, each with one prior sample
    prior_preservation: bool = True
    prior_weight: float = 1.0
    num_class_images: int = 200
    class_image_steps: int = 50
    class_image_guidance: float = 7.5
    cut_mix_unmix: bool = True  # takes effect with two or more subjects
    mix_probability: float = 0.6
    collage_crop: CollageCrop = "subject"  # each collage half: the photo's strip that holds its subject, or "centre"
    unmix_weight: float = 0.01
    unmix_min_downsample: int = 2  # cross-attention maps at 1/2 of the latent resolution and coarser
    train_text_encoder: bool = True
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100  # steps between resumable states (0: never)
    mixed_precision: MixedPrecision = "no"
    gradient_checkpointing: bool = False
    flip: bool = True
    subject_prompt: str = SUBJECT_PROMPT
    # More phrasings of the instance prompt: each single-subject sample draws one of subject_prompt and these
    # uniformly, so that the subject binds to its token rather than to one sentence (empty: the paper's one prompt).
    prompt_templates: tuple[str, ...] = ()
    lr_text: float | None = None  # the text encoder's 2-D shifts; None: the same rate as the UNet's (lr)
    # Token rows: each subject's identifier also learns an offset of its own embedding row (as Custom Diffusion
    # trains its modifier token), which spectral shifts, shared by every token, cannot give one token alone. Off
    # in the paper's recipe; the bundled base model's recipe turns it on (basemodel/recipe.py).
    token_rows: bool = False
    lr_rows: float = 3e-3
    mix_prompt: str = MIX_PROMPT
    class_prompt: str = CLASS_PROMPT
    prior_mix_prompt: str = PRIOR_MIX_PROMPT
    # More phrasings of a collage: (instance, prior) template pairs; each collage draws one of (mix_prompt,
    # prior_mix_prompt) and these uniformly (empty: the paper's one phrasing). svdiff.cutmix.SWAPPED_MIX_PROMPT
    # and SWAPPED_PRIOR_MIX_PROMPT name the right half first.
    mix_phrasings: tuple[tuple[str, str], ...] = ()
    shift_config: ShiftConfig = field(default_factory=ShiftConfig)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise TrainConfigError("steps and batch_size must be positive")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise TrainConfigError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if not 0.0 <= self.mix_probability <= 1.0:
            raise TrainConfigError("mix_probability must lie in [0, 1]")
        if self.collage_crop not in COLLAGE_CROPS:
            raise TrainConfigError(f"collage_crop must be one of {', '.join(COLLAGE_CROPS)}, got {self.collage_crop!r}")
        if self.prior_preservation and self.num_class_images < 1:
            raise TrainConfigError("prior preservation needs num_class_images >= 1")
        if min(self.lr, self.lr_norm, self.max_grad_norm, self.prior_weight, self.unmix_weight) < 0:
            raise TrainConfigError("learning rates, weights and max_grad_norm must be non-negative")
        if not self.lr_rows >= 0:
            raise TrainConfigError("lr_rows must be non-negative")
        if self.token_rows and not (self.train_text_encoder and self.shift_config.text_encoder):
            raise TrainConfigError("token_rows trains the text encoder's token embedding: it needs "
                                   "train_text_encoder and shift_config.text_encoder")
        if self.lr_text is not None and not self.lr_text >= 0:
            raise TrainConfigError("lr_text must be non-negative (or None for the UNet's rate)")
        for template in (self.subject_prompt, *self.prompt_templates):
            if "{token}" not in template or "{class_word}" not in template:
                raise TrainConfigError(f"a subject prompt template needs {{token}} and {{class_word}}: {template!r}")
        for phrasing in ((self.mix_prompt, self.prior_mix_prompt), *self.mix_phrasings):
            if len(phrasing) != 2:
                raise TrainConfigError(f"a collage phrasing is an (instance, prior) pair of templates: {phrasing!r}")
            instance, prior = phrasing
            if not all(name in instance for name in MIX_FIELDS):
                raise TrainConfigError(f"a collage prompt template needs {', '.join(MIX_FIELDS)}: {instance!r}")
            if not all(name in prior for name in PRIOR_MIX_FIELDS):
                raise TrainConfigError(f"a prior collage template needs {', '.join(PRIOR_MIX_FIELDS)}: {prior!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shift_config"] = self.shift_config.to_dict()
        data["prompt_templates"] = list(self.prompt_templates)
        data["mix_phrasings"] = [list(phrasing) for phrasing in self.mix_phrasings]
        return data


def validate_subjects(subjects: list[Subject]) -> None:
    if not 1 <= len(subjects) <= MAX_SUBJECTS:
        raise TrainConfigError(f"train 1 to {MAX_SUBJECTS} subjects at once, got {len(subjects)}")
    tokens = [s.token for s in subjects]
    if len(set(tokens)) != len(tokens) or not all(t.strip() for t in tokens):
        raise TrainConfigError(f"subject tokens must be distinct and non-empty, got {tokens}")
    for subject in subjects:
        if not subject.images:
            raise TrainConfigError(f"subject {subject.token!r} has no images")
        if not subject.class_word.strip():
            raise TrainConfigError(f"subject {subject.token!r} has no class word")
