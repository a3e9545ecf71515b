"""The SVDiff recipe the service trains with on this base model (pure Python: the API reads it without torch).

Stable Diffusion keeps the paper's recipe (lr 1e-3, one instance prompt, `core.settings`). This base model's
rate and step budget are the ones `make bench-quality` calibrated on a subject it never scores; its prompt
templates are the recipe change that benchmark scores against the paper's single prompt ("Recipe ablations" in
bench/results/quality.md).
"""

from __future__ import annotations

# `make bench-quality`'s calibration of SVDiff on this base (bench/results/calibration_svdiff.log): the best of rates
# 1e-3, 3e-3, 9e-3 by 100, 200, 400 steps (score 0.444: subject fidelity 0.333, prompt fidelity 0.111, drift 0.000)
# sits on the grid's corner; the rule's widening (2.7e-2, 800 steps) did not run in the session's time.
LEARNING_RATE = 9e-3
STEPS = 400
# Phrasings of the instance prompt besides svdiff's "a photo of a {token} {class_word}", in the world's own words.
PROMPT_TEMPLATES: tuple[str, ...] = ("a {token} {class_word}", "a photo of {token} {class_word}",
                                     "{token} {class_word}")  # fmt: skip
