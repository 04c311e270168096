"""Paired per-case statistics of two sets of scores on the same cases, as pure functions.

Given one value per case for a reference and for another method (matched by case
id), :func:`paired_statistics` gives what is needed to judge a difference:

- the mean paired difference ``mean(other - reference)``;
- a percentile bootstrap confidence interval of that mean (cases resampled with
  replacement, ``resamples`` times, from a seeded ``numpy.random.Generator``);
- the two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon`` with its
  defaults; zero differences are dropped, and when every difference is zero the
  p-value is defined as 1);
- how many cases the other method is better / worse / tied on, in the metric's own
  direction (higher is better for Dice and Jaccard, lower for HD95 and ASD).

A case enters the statistics only when both of its values are finite; cases with a
NaN on either side (HD95/ASD of an empty mask, see docs/METRICS.md) are named in
the result, never dropped silently. Differences are rounded to 1e-12 before anything
is computed from them, so that floating-point noise (``0.85 - 0.80`` against
``0.90 - 0.85``) neither breaks a tie nor turns a zero into a win.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from canet.errors import CanetError

#: Whether a larger value is better, per metric (``<metric>_<class>`` columns follow their metric).
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "jaccard": True, "hd95": False, "asd": False}
DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95
TIE_DECIMALS = 12
_CHUNK = 1_000_000  # bootstrap indices drawn per block (memory stays ~8 MB)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "HIGHER_IS_BETTER",
    "PairedStatistics",
    "bootstrap_mean_ci",
    "count_better",
    "higher_is_better",
    "match_cases",
    "paired_statistics",
    "wilcoxon_p",
]


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric`` (``dice``, ``hd95``, or a per-class ``dice_2``...).

    Raises:
        CanetError: the metric is not one of :data:`HIGHER_IS_BETTER` (with or
            without a ``_<class>`` ending).
    """
    base = re.sub(r"_\d+$", "", metric)
    if base not in HIGHER_IS_BETTER:
        raise CanetError(
            f"unknown metric {metric!r}: expected one of {', '.join(HIGHER_IS_BETTER)} (or <metric>_<class>)"
        )
    return HIGHER_IS_BETTER[base]


def match_cases(
    reference: Mapping[str, float], other: Mapping[str, float]
) -> tuple[list[str], list[str], list[str]]:
    """Cases of two ``{case: value}`` tables matched by id.

    Returns:
        ``(shared, only_in_reference, only_in_other)``, each sorted.
    """
    ref, oth = set(reference), set(other)
    return sorted(ref & oth), sorted(ref - oth), sorted(oth - ref)


def _as_1d(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise CanetError(f"{what} must be one value per case (1D), got shape {arr.shape}")
    if arr.size == 0:
        raise CanetError(f"{what} is empty: no case to compare")
    if not np.all(np.isfinite(arr)):
        raise CanetError(f"{what} holds NaN or infinite values; leave those cases out first")
    return arr


def bootstrap_mean_ci(
    differences: Sequence[float] | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``differences``.

    Draws ``resamples`` samples of the same size with replacement (indices from
    ``numpy.random.default_rng(seed)``), takes each one's mean and returns the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means
    (numpy's linear interpolation). The same inputs and seed give the same interval.

    Args:
        differences: paired differences, shape ``(n,)``, all finite, ``n >= 1``.
        resamples: number of bootstrap samples (default 10,000).
        confidence: coverage in ``(0, 1)`` (default 0.95).
        seed: seed of the generator.

    Returns:
        ``(low, high)``.
    """
    d = _as_1d(differences, "differences")
    if int(resamples) != resamples or resamples < 1:
        raise CanetError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise CanetError(f"confidence must be in (0, 1), got {confidence!r}")
    rng = np.random.default_rng(seed)
    n = d.size
    means = np.empty(int(resamples), dtype=np.float64)
    per_block = max(_CHUNK // n, 1)
    for start in range(0, int(resamples), per_block):
        stop = min(start + per_block, int(resamples))
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired ``differences``.

    ``scipy.stats.wilcoxon(d)`` with scipy's defaults, whose method depends on
    the scipy version: scipy 1.17 takes the exact distribution for up to 50
    differences without ties or zeros, a permutation test for up to 13 with ties
    or zeros, and the normal approximation otherwise; ``d`` is rounded to
    :data:`TIE_DECIMALS` decimals first. When every difference is zero there is no
    evidence of a difference and the p-value is 1 (scipy would warn or raise).
    """
    from scipy.stats import wilcoxon

    d = np.round(_as_1d(differences, "differences"), TIE_DECIMALS)
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        # few non-zero differences: scipy warns about the normal approximation
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        p = float(wilcoxon(d).pvalue)
    if math.isnan(p):  # pragma: no cover - defensive: scipy gave no answer
        return 1.0
    return min(max(p, 0.0), 1.0)


def count_better(differences: Sequence[float] | np.ndarray, higher_better: bool) -> tuple[int, int, int]:
    """``(better, worse, tied)``: cases where ``other`` beats, loses to, or ties the reference.

    ``differences`` are ``other - reference``; with ``higher_better`` a positive
    difference is a win, otherwise a negative one is.
    """
    d = np.round(_as_1d(differences, "differences"), TIE_DECIMALS)
    sign = 1.0 if higher_better else -1.0
    better = int(np.sum(sign * d > 0))
    worse = int(np.sum(sign * d < 0))
    return better, worse, int(d.size - better - worse)


@dataclass
class PairedStatistics:
    """Paired comparison of ``other`` against ``reference`` on one metric.

    Attributes:
        metric: metric name.
        higher_is_better: the metric's direction.
        cases: cases used (shared by both, finite on both sides), sorted.
        only_in_reference / only_in_other: cases one side lacks (left out, named).
        nan_in_reference / nan_in_other: shared cases left out for a NaN on that side.
        mean_reference / mean_other: means over ``cases``.
        mean_difference: ``mean(other - reference)`` over ``cases``.
        ci_low / ci_high: bootstrap interval of ``mean_difference``.
        confidence: coverage of the interval.
        resamples / seed: bootstrap settings.
        p_value: Wilcoxon signed-rank, two-sided.
        better / worse / tied: case counts for ``other`` in the metric's direction.
    """

    metric: str
    higher_is_better: bool
    cases: list[str]
    only_in_reference: list[str] = field(default_factory=list)
    only_in_other: list[str] = field(default_factory=list)
    nan_in_reference: list[str] = field(default_factory=list)
    nan_in_other: list[str] = field(default_factory=list)
    mean_reference: float = math.nan
    mean_other: float = math.nan
    mean_difference: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    p_value: float = math.nan
    better: int = 0
    worse: int = 0
    tied: int = 0

    @property
    def n(self) -> int:
        """Number of cases used."""
        return len(self.cases)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready: lists and floats) with ``n`` added."""
        out = asdict(self)
        out["n"] = self.n
        return out


def paired_statistics(
    reference: Mapping[str, float],
    other: Mapping[str, float],
    metric: str,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> PairedStatistics:
    """Compare two ``{case: value}`` tables of ``metric`` case by case.

    Cases are matched by id; those missing on one side, and shared ones whose value
    is NaN (or infinite) on either side, are left out and listed in the result.

    Args:
        reference: ``{case: value}`` of the reference.
        other: ``{case: value}`` of the method compared with it.
        metric: metric name (gives the direction, see :func:`higher_is_better`).
        resamples / confidence / seed: see :func:`bootstrap_mean_ci`.

    Returns:
        :class:`PairedStatistics`.

    Raises:
        CanetError: unknown metric, or no case shared with a finite value on both sides.
    """
    higher = higher_is_better(metric)
    shared, only_ref, only_other = match_cases(reference, other)
    if not shared:
        raise CanetError(
            f"no case is shared by the two {metric} tables "
            f"(reference has {len(reference)}, e.g. {_first(reference)}; other has {len(other)}, e.g. {_first(other)})"
        )
    nan_ref = [c for c in shared if not math.isfinite(float(reference[c]))]
    nan_other = [c for c in shared if not math.isfinite(float(other[c]))]
    bad = set(nan_ref) | set(nan_other)
    cases = [c for c in shared if c not in bad]
    result = PairedStatistics(
        metric=metric, higher_is_better=higher, cases=cases, only_in_reference=only_ref,
        only_in_other=only_other, nan_in_reference=nan_ref, nan_in_other=nan_other,
        confidence=confidence, resamples=int(resamples), seed=int(seed),
    )
    if not cases:
        return result  # every shared case is NaN on some side: counted, no statistics
    ref = np.array([float(reference[c]) for c in cases])
    oth = np.array([float(other[c]) for c in cases])
    d = np.round(oth - ref, TIE_DECIMALS)  # float noise of the inputs is not a difference
    result.mean_reference = float(ref.mean())
    result.mean_other = float(oth.mean())
    result.mean_difference = float(d.mean())
    result.ci_low, result.ci_high = bootstrap_mean_ci(d, resamples, confidence, seed)
    result.p_value = wilcoxon_p(d)
    result.better, result.worse, result.tied = count_better(d, higher)
    return result


def _first(table: Mapping[str, float]) -> str:
    return repr(min(table)) if table else "none"
