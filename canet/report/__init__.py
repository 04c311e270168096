"""The HTML report of a run or an evaluation (see :mod:`canet.report.html`) and of a
comparison (:mod:`canet.report.comparison`)."""

from canet.report.comparison import comparison_html, write_comparison_report
from canet.report.html import (
    load_training_metrics,
    plot_training_curves,
    render_case_png,
    save_case_slices,
    write_report,
)

__all__ = [
    "comparison_html",
    "load_training_metrics",
    "plot_training_curves",
    "render_case_png",
    "save_case_slices",
    "write_comparison_report",
    "write_report",
]
