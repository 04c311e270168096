"""Collect ``eval/summary.json`` of runs laid out as OUT/<config>/seed<S>/ into one table.

Prints a Markdown table: per config the mean and std over seeds of each metric's
per-seed mean, the number of seeds, the training time per run, and the paper's
figure where the paper gives one.

Usage: python benchmarks/aggregate_results.py OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Dice (%) reported by Zhao et al. (2023) on LA and, for the fully supervised
# V-Net, the range reported across the semi-supervised LA literature.
PAPER_DICE = {
    "la_canet_8": "88.14",
    "la_canet_16": "90.09",
    "la_vnet_full": "91.1-91.6",
}
METRICS = ("dice", "jaccard", "hd95", "asd")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def collect(out_dir: Path) -> list[dict[str, object]]:
    """One row per config folder under ``out_dir``."""
    rows: list[dict[str, object]] = []
    for cfg_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        per_metric: dict[str, list[float]] = {m: [] for m in METRICS}
        seconds: list[float] = []
        seeds = 0
        for run in sorted(cfg_dir.glob("seed*")):
            summary_path = run / "eval" / "summary.json"
            if not summary_path.is_file():
                continue
            summary = json.loads(summary_path.read_text())
            seeds += 1
            for m in METRICS:
                value = summary[m]["mean"]
                if value is not None:
                    scale = 100.0 if m in ("dice", "jaccard") else 1.0
                    per_metric[m].append(float(value) * scale)
            t = run / "train_seconds.txt"
            if t.is_file():
                seconds.append(float(t.read_text()))
        if seeds:
            rows.append(
                {
                    "config": cfg_dir.name,
                    "seeds": seeds,
                    **{m: _mean_std(per_metric[m]) for m in METRICS},
                    "hours": f"{statistics.fmean(seconds) / 3600:.2f}" if seconds else "-",
                    "paper": PAPER_DICE.get(cfg_dir.name, "-"),
                }
            )
    return rows


def to_markdown(rows: list[dict[str, object]]) -> str:
    header = "| config | seeds | Dice % | Jaccard % | 95HD (vox) | ASD (vox) | h/run | paper Dice % |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['seeds']} | {r['dice']} | {r['jaccard']} | {r['hd95']} "
            f"| {r['asd']} | {r['hours']} | {r['paper']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    print(to_markdown(collect(args.out_dir)))


if __name__ == "__main__":
    main()
