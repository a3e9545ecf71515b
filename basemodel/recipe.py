"""The SVDiff recipe the service trains with on this base model (pure Python: the API reads it without torch).

Stable Diffusion keeps the paper's recipe (lr 1e-3, one instance prompt, no token rows, `core.settings`). This base
model's rate and step budget are the ones `make bench-quality` calibrated on a subject it never scores; its prompt
templates and token rows are the recipe changes that benchmark scores against the paper's recipe ("Recipe
ablations" in bench/results/quality.md).
"""

from __future__ import annotations

# `make bench-quality`'s calibration of SVDiff with token rows on this base (2026-12-05, bench/results/calibrated/,
# on purple-dotted-square, never scored): the best of rates 1e-3, 3e-3, 9e-3 by 100, 200, 400 steps was 9e-3 at 400
# (score 0.167), on the grid's corner; the rule's widening chose 9e-3 at 800 steps (score 0.722: subject fidelity
# 0.611, prompt fidelity 0.111, drift 0.000), still on the most-steps edge. (Without token rows, 2026-12-02, the same
# rule's grid had chosen 9e-3 at 400: bench/results/calibration_svdiff.log.)
LEARNING_RATE = 9e-3
STEPS = 800
# Token rows (svdiff.TrainConfig.token_rows): the identifier's own embedding row learns an offset beside the shifts.
# Chosen on the calibration subject, which is never scored (purple-dotted-square, 400 steps at 9e-3, 48 context
# samples): subject fidelity 0.042 [0.01, 0.14] without, 0.167 [0.09, 0.30] at a row rate of 1e-3, 0.271
# [0.17, 0.41] at 3e-3, 0.229 [0.13, 0.37] at 9e-3, 0.271 [0.17, 0.41] at 2.7e-2 (2026-12-04, the diagnostic that
# `python -m bench.quality.probe_rows` runs). The rows lift the instance details, which the identifier's alias in
# the base pulls the other way.
TOKEN_ROWS = True
TOKEN_ROWS_LEARNING_RATE = 3e-3
# Phrasings of the instance prompt besides svdiff's "a photo of a {token} {class_word}", in the world's own words.
PROMPT_TEMPLATES: tuple[str, ...] = ("a {token} {class_word}", "a photo of {token} {class_word}",
                                     "{token} {class_word}")  # fmt: skip
# Cut-Mix collages phrased in both orders: svdiff's "a photo of a X on the left and a Y on the right" and the same
# collage named right half first (svdiff.cutmix.SWAPPED_MIX_PROMPT), each drawn with probability 1/2. Why: trained
# on the first phrasing only, every Cut-Mix row of bench/results/zsnr failed the swapped prompt (0 of 24) while the
# training order reached 0.250. Scored by bench/results/zsnr-phrasings (its ablation row: one phrasing).
MIX_PHRASINGS: tuple[tuple[str, str], ...] = (
    ("a photo of a {token_right} {class_right} on the right and a {token_left} {class_left} on the left",
     "a photo of a {class_right} on the right and a {class_left} on the left"),
)  # fmt: skip
