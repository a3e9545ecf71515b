"""Rates measured on samples, with their 95% Wilson score intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Z95 = 1.959964


@dataclass(frozen=True)
class Rate:
    hits: int
    n: int

    @classmethod
    def of(cls, flags: Iterable[bool]) -> Rate:
        values = list(flags)
        return cls(sum(bool(v) for v in values), len(values))

    @classmethod
    def pooled(cls, rates: Iterable[Rate]) -> Rate:
        """Hits and samples added up (every sample counts once)."""
        values = list(rates)
        return cls(sum(r.hits for r in values), sum(r.n for r in values))

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% Wilson score interval (sound at 0 and 1 hits, unlike the normal approximation)."""
        if not self.n:
            return (float("nan"), float("nan"))
        p, n, z2 = self.value, self.n, Z95**2
        centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return (max(0.0, centre - half), min(1.0, centre + half))

    @property
    def lo(self) -> float:
        return self.interval[0]

    @property
    def hi(self) -> float:
        return self.interval[1]

    def __str__(self) -> str:
        lo, hi = self.interval
        return f"{self.value:.3f} [{lo:.2f}, {hi:.2f}]"


def separated(below: Rate, above: Rate) -> bool:
    """True when `below`'s interval lies wholly under `above`'s: a finding, not noise."""
    return below.hi < above.lo
