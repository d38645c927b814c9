"""Small statistics for reports: mean and Student-t 95 % confidence intervals over replications.

No SciPy: the two-sided 95 % t quantiles (t_{0.975, df}) are tabulated for df 1..30; beyond 30
degrees of freedom the normal quantile (1.959964) is used, which is within 2 % of the exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)
"""t_{0.975, df} for df = 1..30 (index df - 1)."""

Z_975 = 1.959964


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (normal beyond 30)."""
    if df < 1:
        raise ValueError("degrees of freedom must be >= 1")
    return T_975[df - 1] if df <= len(T_975) else Z_975


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with the half width of its 95 % confidence interval (None for n < 2)."""

    n: int
    mean: float
    half_width: float | None
    stdev: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def format(self, digits: int = 2, unit: str = "") -> str:
        """``12.30 ± 0.45 s`` (or just the mean when there is a single value)."""
        if self.half_width is None:
            return f"{self.mean:.{digits}f}{unit}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}{unit}"


def mean_ci(values: Iterable[float | int | None]) -> MeanCI | None:
    """Mean and 95 % CI (Student t, sample standard deviation) of the non-None values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return MeanCI(n, mean, None, None)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    sd = math.sqrt(var)
    return MeanCI(n, mean, t_quantile_975(n - 1) * sd / math.sqrt(n), sd)
