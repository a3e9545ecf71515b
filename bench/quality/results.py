"""What one benchmark run measured: the report's input."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.quality.calibrate import Calibration
from bench.quality.evaluate import PairResult, SingleResult
from bench.quality.scoring import SingleScores
from bench.quality.settings import Settings

NO_CMU, CMU = "joint, no Cut-Mix", "Cut-Mix-Unmix"
CMU_CENTRE = "Cut-Mix-Unmix, centre strips (ablation)"  # collage halves cut from the photos' centres
CMU_ONE_PHRASING = "Cut-Mix-Unmix, one phrasing (ablation)"  # collages always named left half first


@dataclass
class Results:
    single: dict[str, dict[str, SingleResult]] = field(default_factory=dict)  # subject -> method -> result
    ceilings: dict[str, dict[str, SingleScores]] = field(default_factory=dict)  # subject -> kind -> scores
    stress: dict[str, dict[str, SingleResult]] = field(default_factory=dict)  # subject -> method -> result
    ablations: dict[str, dict[str, SingleResult]] = field(default_factory=dict)  # variant -> subject -> result
    pairs: dict[str, PairResult] = field(default_factory=dict)
    base_following: dict[str, float] = field(default_factory=dict)  # basemodel.evaluate.prompt_following
    calibration: Calibration | None = None
    method_settings: dict[str, Settings] = field(default_factory=dict)  # the calibrated rate and steps per method
    seconds: float = 0.0
