"""Segmentation metrics with ``medpy.metric.binary``'s definitions, as pure numpy/scipy functions.

See :mod:`canet.metrics.binary` for the definitions and the empty-mask policy
(HD95/ASD are NaN when a mask is empty; all four are NaN when both are)
and :mod:`canet.metrics.summary` for per-case rows and summaries.
"""

from canet.metrics.binary import asd, binary_metrics, dice, hd95, jaccard, surface_distances
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
    "asd",
    "binary_metrics",
    "check_label_values",
    "dice",
    "hd95",
    "jaccard",
    "label_values",
    "multiclass_metrics",
    "stats",
    "summarize",
    "surface_distances",
]
