"""Segmentation metrics with ``medpy.metric.binary``'s definitions, as pure numpy/scipy functions.

See :mod:`canet.metrics.binary` for the definitions and the empty-mask policy
(HD95/ASD are NaN when a mask is empty; all four are NaN when both are)
and :mod:`canet.metrics.summary` for per-case rows and summaries;
:mod:`canet.metrics.paired` compares two methods case by case (bootstrap CI,
Wilcoxon p-value).
"""

from canet.metrics.binary import asd, binary_metrics, dice, hd95, jaccard, surface_distances
from canet.metrics.paired import PairedStatistics, bootstrap_mean_ci, paired_statistics, wilcoxon_p
from canet.metrics.summary import (
    METRICS,
    MetricAccumulator,
    check_label_values,
    label_values,
    multiclass_metrics,
    stats,
    summarize,
)

__all__ = [
    "METRICS",
    "MetricAccumulator",
    "PairedStatistics",
    "asd",
    "binary_metrics",
    "bootstrap_mean_ci",
    "check_label_values",
    "dice",
    "hd95",
    "jaccard",
    "label_values",
    "multiclass_metrics",
    "paired_statistics",
    "stats",
    "summarize",
    "surface_distances",
    "wilcoxon_p",
]
