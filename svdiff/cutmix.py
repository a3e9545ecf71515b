"""Cut-Mix: left/right collages of two subjects, their prompts, and the regions the unmix loss needs.

Geometry: each half of a collage is a half-width strip of one prepared square photo, at full height and unchanged
scale, so the subject keeps the size the single-subject samples show it, with no squeezing that would teach the
model distorted proportions. The strip is the one that holds most of what differs from the photo's border
(`subject_strip`): a photo's centre strip cut an off-centre subject in two, or left only a sliver of it, and the
model was then taught that the identifier on one side means a piece of the subject (`collage_crop="centre"` keeps
the centre strip, for comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch

SUBJECT_PROMPT = "a photo of a {token} {class_word}"
MIX_PROMPT = "a photo of a {token_left} {class_left} on the left and a {token_right} {class_right} on the right"
PRIOR_MIX_PROMPT = "a photo of a {class_left} on the left and a {class_right} on the right"
# The same collage named right half first. Phrased only as MIX_PROMPT, a collage ties each identifier to the side
# it is named first at, and a prompt naming the right-hand subject first fails (TrainConfig.mix_phrasings).
SWAPPED_MIX_PROMPT = "a photo of a {token_right} {class_right} on the right and a {token_left} {class_left} on the left"
SWAPPED_PRIOR_MIX_PROMPT = "a photo of a {class_right} on the right and a {class_left} on the left"
MIX_FIELDS = ("{token_left}", "{class_left}", "{token_right}", "{class_right}")
PRIOR_MIX_FIELDS = ("{class_left}", "{class_right}")
CollageCrop = Literal["subject", "centre"]
COLLAGE_CROPS: tuple[str, ...] = get_args(CollageCrop)


def draw_layout(num_subjects: int, mix_probability: float, generator: torch.Generator) -> tuple[int, ...]:
    """(i,) for a single-subject sample, (left, right) with left != right for a collage.

    Collages happen with probability `mix_probability` when there are at least two subjects; both the pair and
    its order are uniform, so each subject appears on either side.
    """
    if num_subjects < 1:
        raise ValueError("need at least one subject")
    draw = torch.rand((), generator=generator).item()
    if num_subjects >= 2 and draw < mix_probability:
        left = int(torch.randint(num_subjects, (), generator=generator))
        right = int(torch.randint(num_subjects - 1, (), generator=generator))
        return (left, right + (right >= left))  # skip `left`: uniform over the other subjects
    return (int(torch.randint(num_subjects, (), generator=generator)),)


def center_strip(image: torch.Tensor, width: int) -> torch.Tensor:
    """The centre `width` columns of (..., H, W)."""
    start = (image.shape[-1] - width) // 2
    return image[..., start : start + width]


def subject_strip(image: torch.Tensor, width: int) -> torch.Tensor:
    """The `width` columns of (C, H, W) whose pixels differ most, in sum, from the median colour of the image's
    border (where a photo's subject is not, as a rule); among equal strips, the most central."""
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=-1)  # (C, 2H + 2W)
    columns = (image - border.median(dim=-1).values[:, None, None]).abs().mean(dim=0).sum(dim=0)  # (W,)
    sums = torch.cat([columns.new_zeros(1), columns.cumsum(0)])
    totals = sums[width:] - sums[:-width]  # (W - width + 1,): strip starting at each column
    starts = torch.arange(totals.shape[0], dtype=totals.dtype)
    central = (image.shape[-1] - width) / 2
    best = int(torch.argmax(totals - 1e-6 * (starts - central).abs()))
    return image[..., best : best + width]


def collage(left: torch.Tensor, right: torch.Tensor, crop: CollageCrop = "subject") -> torch.Tensor:
    """(C, H, W): a half-width strip of `left` fills columns [0, W//2), one of `right` the rest; `crop` "subject"
    takes each photo's `subject_strip`, "centre" its centre strip."""
    if left.shape != right.shape:
        raise ValueError(f"collage halves differ in shape: {tuple(left.shape)} and {tuple(right.shape)}")
    if crop not in COLLAGE_CROPS:
        raise ValueError(f"unknown collage crop {crop!r}; known: {', '.join(COLLAGE_CROPS)}")
    strip = subject_strip if crop == "subject" else center_strip
    width = left.shape[-1]
    half = width // 2
    return torch.cat([strip(left, half), strip(right, width - half)], dim=-1)


def half_masks(height: int, width: int) -> torch.Tensor:
    """(2, height, width) float masks of the left and right halves at any resolution.

    A column belongs to the side its centre lies on; with an odd width the middle column belongs to neither.
    """
    centers = (torch.arange(width, dtype=torch.float32) + 0.5) / width  # (width,)
    left = (centers < 0.5).float().expand(height, width)
    right = (centers > 0.5).float().expand(height, width)
    return torch.stack([left, right])


def subject_prompt(token: str, class_word: str, template: str = SUBJECT_PROMPT) -> str:
    return template.format(token=token, class_word=class_word)


def mix_prompt(left: tuple[str, str], right: tuple[str, str], template: str = MIX_PROMPT) -> str:
    """The collage prompt for (token, class word) pairs on the left and the right."""
    return template.format(token_left=left[0], class_left=left[1], token_right=right[0], class_right=right[1])


def prior_mix_prompt(class_left: str, class_right: str, template: str = PRIOR_MIX_PROMPT) -> str:
    return template.format(class_left=class_left, class_right=class_right)


def layout_prompt(layout: Sequence[int], subjects: Sequence[tuple[str, str]], *, subject_template: str = SUBJECT_PROMPT,
                  mix_template: str = MIX_PROMPT) -> str:
    """The instance prompt for a layout drawn by draw_layout over (token, class word) subjects."""
    if len(layout) == 1:
        return subject_prompt(*subjects[layout[0]], template=subject_template)
    return mix_prompt(subjects[layout[0]], subjects[layout[1]], template=mix_template)
