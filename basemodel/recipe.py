"""The SVDiff recipe the service trains with on this base model (pure Python: the API reads it without torch).

Stable Diffusion keeps the paper's recipe (lr 1e-3, one instance prompt, `core.settings`). This base model's
rate and step budget are the ones `make bench-quality` calibrated on a subject it never scores
(bench/results/quality.md, "Calibration"); its prompt templates are the recipe change that benchmark scores
against the paper's single prompt ("Recipe ablations").
"""

from __future__ import annotations

LEARNING_RATE = 3e-3
STEPS = 300
# Phrasings of the instance prompt besides svdiff's "a photo of a {token} {class_word}", in the world's own words.
PROMPT_TEMPLATES: tuple[str, ...] = ("a {token} {class_word}", "a photo of {token} {class_word}",
                                     "{token} {class_word}")  # fmt: skip
