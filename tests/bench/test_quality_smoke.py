"""`python -m bench.quality --quick` end to end on the shipped base model (slow: `make test-slow`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from basemodel import BASE_MODEL_PATH, READER_PATH

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^quality: svdiff_fidelity=(\S+) svdiff_drift=(\S+) full_drift=(\S+) cmu_both=(\S+) "
    r"nocmu_both=(\S+)$"
)


@pytest.mark.slow
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
    for needle in ("SVDiff (ours)", "full fine-tuning", "LoRA r4", "Cut-Mix-Unmix", "## Goals",
                   "| SVDiff (ours) | 1.0e-03 |", "| LoRA r4 (PEFT) | 1.0e-03 |"):  # calibration trials: x1, x10
        assert needle in report
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert pngs == ["context_purple-checkered-star.png", "drift_purple-checkered-star.png", "pair.png"]
    assert any((tmp_path / "cache" / "class-images").rglob("*.png"))  # the prior images were cached
