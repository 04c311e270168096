"""``canet compare``: a thin parser over :func:`canet.comparison.compare`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canet.cli.argtypes import nonnegative_int, output_path, positive_int
from canet.metrics.paired import DEFAULT_RESAMPLES


def _run_compare(args: argparse.Namespace) -> int:
    from canet.comparison import compare
    from canet.errors import CanetError

    if args.report and args.out is None:
        raise CanetError("--report writes DIR/compare.html and needs --out DIR")
    comparison = compare(
        args.evaluations, metrics=args.metric, reference=args.reference,
        resamples=args.resamples, seed=args.seed, out_dir=args.out, distance_penalty=args.distance_penalty,
    )
    print(comparison.markdown(), end="")
    if args.out is not None:
        out = Path(args.out)
        print(f"wrote {out / 'compare.md'} and {out / 'compare.json'}")
        if args.report:
            from canet.report import write_comparison_report

            print(f"wrote {write_comparison_report(out / 'compare.json')}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``compare``."""
    p = subparsers.add_parser(
        "compare",
        help="compare evaluations: paired per-case differences with bootstrap CI, Wilcoxon p and seed spread",
        description=(
            "Compare evaluation folders (metrics.csv + summary.json from canet evaluate / canet score). "
            "An argument is one evaluation (or a run folder with eval/ inside) or a folder of such "
            "folders, one per training seed of the same config. Every group is compared with the "
            "reference on the cases both hold, matched by case id: mean paired difference, percentile "
            "bootstrap 95 % CI, Wilcoxon signed-rank p-value, cases better / worse. Missing cases and "
            "NaN values (HD95/ASD of empty masks) are left out and named; --distance-penalty counts a "
            "missed structure's HD95/ASD instead."
        ),
    )
    p.add_argument("evaluations", nargs="+", metavar="EVAL",
                   help="evaluation folder, run folder, or folder of seed folders (the first is the reference)")
    p.add_argument("--metric", nargs="+", default=None, metavar="NAME",
                   help="metrics to compare (default dice jaccard hd95 asd; per-class columns such as dice_2 work too)")
    p.add_argument("--reference", default=None, metavar="NAME",
                   help="group to compare the others with: its name or folder as given (default the first)")
    p.add_argument("--resamples", type=positive_int, default=DEFAULT_RESAMPLES,
                   help=f"bootstrap resamples (default {DEFAULT_RESAMPLES})")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--distance-penalty", default=None, metavar="diagonal|NUMBER",
                   help="count HD95/ASD of a missed structure (one mask empty: Dice 0, distance NaN) as this "
                        "distance instead of leaving the case out: 'diagonal' (the volume's diagonal, from "
                        "metrics.csv) or a number in the distance unit")
    p.add_argument("--out", type=output_path, default=None, metavar="DIR", help="also write DIR/compare.md and DIR/compare.json")
    p.add_argument("--report", action="store_true", help="with --out: also write DIR/compare.html")
    p.set_defaults(func=_run_compare)
