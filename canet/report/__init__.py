"""The HTML report of a run or an evaluation (see :mod:`canet.report.html`)."""

from canet.report.html import (
    load_training_metrics,
    plot_training_curves,
    render_case_png,
    save_case_slices,
    write_report,
)

__all__ = [
    "load_training_metrics",
    "plot_training_curves",
    "render_case_png",
    "save_case_slices",
    "write_report",
]
