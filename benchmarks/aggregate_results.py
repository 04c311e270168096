"""Collect the evaluations of runs laid out as OUT/<config>/seed<S>/eval/ into tables.

Prints Markdown: per config the mean and std over seeds of each metric's per-seed
mean, the number of seeds, the training time per run and the paper's figure where
the paper gives one; then the paired per-case comparison of every config with the
reference config (per-case means over seeds, 95 % bootstrap CI, Wilcoxon p, seed
std beside the difference), computed by :mod:`canet.comparison` (``canet compare``)
and also written to OUT/compare.md and OUT/compare.json.

Usage: python benchmarks/aggregate_results.py OUT_DIR [--reference CONFIG] [--metric dice ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from canet.comparison import Comparison, Group, compare_groups, load_group
from canet.errors import CanetError

# Dice (%) reported by Zhao et al. (2023) on LA and, for the fully supervised
# V-Net, the range reported across the semi-supervised LA literature.
PAPER_DICE = {
    "la_canet_8": "88.14",
    "la_canet_16": "90.09",
    "la_vnet_full": "91.1-91.6",
}
METRICS = ("dice", "jaccard", "hd95", "asd")


def _mean_std(mean: float | None, std: float | None, scale: float) -> str:
    if mean is None:
        return "-"
    return f"{mean * scale:.2f} ± {(std or 0.0) * scale:.2f}"


def load_groups(out_dir: Path) -> tuple[list[Group], list[str]]:
    """One :class:`Group` per config folder under ``out_dir`` holding at least one
    evaluated seed, and a note per config folder without any."""
    groups: list[Group] = []
    skipped: list[str] = []
    for cfg_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        try:
            groups.append(load_group(cfg_dir))
        except CanetError as exc:
            if "holds no evaluation" not in str(exc):
                raise
            skipped.append(f"{cfg_dir.name}: no evaluated seed yet, left out")
    return groups, skipped


def collect(out_dir: Path) -> list[dict[str, object]]:
    """One row per config folder under ``out_dir`` (mean ± std over seeds per metric)."""
    groups, _ = load_groups(out_dir)
    return rows_of(groups)


def rows_of(groups: list[Group]) -> list[dict[str, object]]:
    """The summary rows of ``groups`` (seed means from :meth:`Group.statistics`)."""
    rows: list[dict[str, object]] = []
    for group in groups:
        cells: dict[str, object] = {"config": group.name, "seeds": group.n_seeds}
        for m in METRICS:
            st = group.statistics(m)
            cells[m] = _mean_std(st["seed_mean"], st["seed_std"], 100.0 if m in ("dice", "jaccard") else 1.0)
        seconds = [
            float(t.read_text()) for t in (ev.path.parent / "train_seconds.txt" for ev in group.members) if t.is_file()
        ]
        cells["hours"] = f"{statistics.fmean(seconds) / 3600:.2f}" if seconds else "-"
        cells["paper"] = PAPER_DICE.get(group.name, "-")
        rows.append(cells)
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


def paired(
    groups: list[Group], reference: str | None, metrics: list[str], resamples: int, seed: int
) -> Comparison | None:
    """The paired comparison of every config with ``reference`` (None with fewer than 2 configs)."""
    if len(groups) < 2:
        return None
    if reference is not None and reference not in [g.name for g in groups]:
        raise CanetError(f"reference config {reference!r} not found (configs: {', '.join(g.name for g in groups)})")
    return compare_groups(groups, metrics=metrics, reference=reference, resamples=resamples, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--reference", default=None, help="config the others are compared with (default the first)")
    parser.add_argument("--metric", nargs="+", default=["dice"], help="metrics of the paired table (default dice)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args()
    try:
        groups, skipped = load_groups(args.out_dir)
        text = to_markdown(rows_of(groups))
        comparison = paired(groups, args.reference, args.metric, args.resamples, args.seed)
    except CanetError as exc:
        sys.exit(f"error: {exc}")
    if comparison is not None:
        comparison.write(args.out_dir)
        text += "\n\n" + comparison.markdown(kinds=("pairs",)).rstrip("\n")
    if skipped:
        text += "\n\n" + "\n".join(f"- {line}" for line in skipped)
    print(text)


if __name__ == "__main__":
    main()
