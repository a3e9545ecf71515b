"""`python -m bench.quality --quick` end to end on the shipped base model (in `make test`: CI runs it)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from basemodel import BASE_MODEL_PATH, READER_PATH

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("svdiff_fidelity", "svdiff_fidelity_lo", "full_fidelity", "svdiff_prompt", "svdiff_drift_hi",
         "full_drift_lo", "cmu_both", "nocmu_both", "stress_svdiff", "stress_full")
LINE = re.compile("^quality: " + " ".join(rf"{name}=(\S+)" for name in NAMES) + "$")


def test_quick_run_writes_report_grids_and_line(tmp_path: Path) -> None:
    if not (BASE_MODEL_PATH / "model_index.json").exists() or not (READER_PATH / "config.json").exists():
        pytest.skip("the base model is not built")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.quality",
            "--quick",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    last = out.stdout.strip().splitlines()[-1]
    match = LINE.match(last)
    assert match, last
    assert all(0.0 <= float(value) <= 1.0 for value in match.groups())
    report = (tmp_path / "out" / "quality.md").read_text()
    for needle in ("SVDiff (ours)", "full fine-tuning", "LoRA r4", "Cut-Mix-Unmix", "## Goals", "## Stress row",
                   "## Recipe ablations", "one prompt", "| SVDiff (ours) | 3.0e-03 | 1 |",
                   "| LoRA r4 (PEFT) | 9.0e-04 | 2 |"):  # calibration trials: rate x1 at 1 step, x3 at 2
        assert needle in report
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["context_green-dotted-diamond.png", "drift_green-dotted-diamond.png", "pair.png"]
    assert any((tmp_path / "cache" / "class-images").rglob("*.png"))  # the prior images were cached


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--calibrate", "lora"], "neither calibrated nor --fixed"),
        (["--calibrate", "lora,dreambooth"], "unknown methods"),
        (["--calibrate", "lora", "--fixed", "svdiff=9e-3", "--fixed", "full=1e-4@400"], "METHOD=RATE@STEPS"),
        (["--calibrate", "lora", "--fixed", "svdiff=9e-3@0", "--fixed", "full=1e-4@400"], "at least 1"),
        (["--fixed", "svdiff=9e-3@800"], "both calibrated and --fixed"),
    ],
)
def test_calibrating_some_methods_needs_the_others_fixed(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.quality.run import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and says in capsys.readouterr().err

