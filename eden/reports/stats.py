"""Small statistics for reports: mean and Student-t 95 % confidence intervals over replications.

No SciPy: the two-sided 95 % t quantiles (t_{0.975, df}) are tabulated for df 1..30; beyond 30
degrees of freedom the normal quantile (1.959964) is used, which is within 2 % of the exact value.

Times are never negative, but a t interval from few, spread values can reach below zero (two
replications give t = 12.7). Such an interval says nothing the data support: it is not shown,
and the report says the sample is too small (``lower`` of :func:`mean_ci`), rather than clipping
it at the bound, which would claim a confidence the method does not give.
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
    too_small: bool = False
    """The t interval crossed the quantity's lower bound (a time below 0): ``half_width`` is None."""

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def format(self, digits: int = 2, unit: str = "") -> str:
        """``12.30 ± 0.45 s`` (or just the mean when there is a single value)."""
        if self.too_small:
            return f"{self.mean:.{digits}f}{unit} (n={self.n} too small for a 95 % CI)"
        if self.half_width is None:
            return f"{self.mean:.{digits}f}{unit}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}{unit}"


def mean_ci(values: Iterable[float | int | None], lower: float | None = None) -> MeanCI | None:
    """Mean and 95 % CI (Student t, sample standard deviation) of the non-None values. With
    ``lower`` (the least value the quantity can take: 0 for a time), an interval reaching below it
    is withheld and the result marked ``too_small``."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return MeanCI(n, mean, None, None)
    var = sum((x - mean) ** 2 for x in xs) / (n - 1)
    sd = math.sqrt(var)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    if lower is not None and mean - half < lower:
        return MeanCI(n, mean, None, sd, too_small=True)
    return MeanCI(n, mean, half, sd)
