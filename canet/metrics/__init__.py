"""Segmentation metrics with ``medpy.metric.binary``'s definitions, as pure numpy/scipy functions.

See :mod:`canet.metrics.binary` for the definitions and the empty-mask policy
(HD95/ASD are NaN when a mask is empty; Dice/Jaccard are 1 when both are empty)
and :mod:`canet.metrics.summary` for per-case rows and summaries.
"""

from canet.metrics.binary import asd, binary_metrics, dice, hd95, jaccard, surface_distances
from canet.metrics.summary import METRICS, MetricAccumulator, multiclass_metrics, stats, summarize

__all__ = [
    "METRICS",
    "MetricAccumulator",
    "asd",
    "binary_metrics",
    "dice",
    "hd95",
    "jaccard",
    "multiclass_metrics",
    "stats",
    "summarize",
    "surface_distances",
]
