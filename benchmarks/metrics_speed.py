"""Seconds per LA test volume: canet's metrics against medpy's, in one run.

For each case the ground truth is the LA label and the "prediction" is that label
moved by ``--shift`` voxels along each axis (an imperfect mask with a real surface),
so both libraries measure the same non-trivial pair. canet computes Dice, Jaccard,
95HD and ASD in one call (:func:`canet.metrics.binary_metrics`); medpy is called as
the literature's test code calls it (``dc``, ``jc``, ``hd95``, ``asd``, each on its
own). The two are timed one after the other on the same arrays, so their ratio
compares like with like; the script also prints the largest difference between
their values.

Run it on an otherwise idle machine: ``OMP_NUM_THREADS=1`` is set before numpy is
imported, so both run on one core.

Usage:
    python benchmarks/metrics_speed.py --cases 20
    python benchmarks/metrics_speed.py --data ../shared/data/LA --cases 2 --json metrics_speed.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from canet.data import LA_CASES_DIR, LA_FILE_NAME  # noqa: E402
from canet.device import cpu_info  # noqa: E402
from canet.metrics import binary_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = ("dice", "jaccard", "hd95", "asd")


def medpy_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The four metrics as the literature's test code computes them (medpy, one call each)."""
    from medpy.metric import binary as mb

    return {"dice": mb.dc(pred, gt), "jaccard": mb.jc(pred, gt), "hd95": mb.hd95(pred, gt), "asd": mb.asd(pred, gt)}


def canet_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The four metrics in one call of :func:`canet.metrics.binary_metrics` (voxel units, as medpy's default)."""
    return binary_metrics(pred, gt)


def shifted(mask: np.ndarray, shift: int) -> np.ndarray:
    """``mask`` moved by ``shift`` voxels along every axis (voxels moved out are dropped, zeros come in)."""
    out = np.zeros_like(mask)
    if shift == 0:
        return mask.copy()
    src = tuple(slice(0, n - shift) for n in mask.shape)
    dst = tuple(slice(shift, n) for n in mask.shape)
    out[dst] = mask[src]
    return out


def timed(fn: Callable[[np.ndarray, np.ndarray], dict[str, float]], pred: np.ndarray,
          gt: np.ndarray) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    values = fn(pred, gt)
    return values, time.perf_counter() - start


def run(data: Path, cases: int, shift: int) -> dict[str, Any]:
    """Time both libraries on the first ``cases`` ids of ``data``'s test.list; returns the record."""
    test_list = data / "test.list"
    if not test_list.is_file():
        sys.exit(f"error: {test_list} not found; give the LA folder with --data")
    ids = [line.strip() for line in test_list.read_text().splitlines() if line.strip()][:cases]
    rows = []
    for case_id in ids:
        with h5py.File(data / LA_CASES_DIR / case_id / LA_FILE_NAME, "r") as fh:
            gt = np.asarray(fh["label"]) > 0
        pred = shifted(gt, shift)
        ours, t_ours = timed(canet_metrics, pred, gt)
        theirs, t_theirs = timed(medpy_metrics, pred, gt)
        diff = max(abs(float(ours[m]) - float(theirs[m])) for m in METRICS)
        rows.append({"case": case_id, "shape": list(gt.shape), "canet_s": t_ours, "medpy_s": t_theirs,
                     "ratio": t_theirs / t_ours, "max_abs_difference": diff,
                     "hd95": float(ours["hd95"]), "asd": float(ours["asd"])})
        print(f"{case_id}: canet {t_ours:.3f} s, medpy {t_theirs:.3f} s ({t_theirs / t_ours:.1f}x), "
              f"largest difference {diff:.2e}", flush=True)
    canet_mean = statistics.fmean(r["canet_s"] for r in rows)
    medpy_mean = statistics.fmean(r["medpy_s"] for r in rows)
    return {
        "cases": len(rows), "shift": shift, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu_info(), "canet_s_per_volume": canet_mean, "medpy_s_per_volume": medpy_mean,
        "ratio_of_means": medpy_mean / canet_mean,
        "ratio_min": min(r["ratio"] for r in rows), "ratio_max": max(r["ratio"] for r in rows),
        "max_abs_difference": max(r["max_abs_difference"] for r in rows), "per_case": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "LA",
                        help="LA folder (default ../shared/data/LA)")
    parser.add_argument("--cases", type=int, default=20, help="test cases to time (default 20)")
    parser.add_argument("--shift", type=int, default=2, help="voxels the prediction is moved by (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = parser.parse_args(argv)
    if args.cases < 1 or args.shift < 0:
        parser.error("--cases must be at least 1 and --shift at least 0")
    record = run(args.data, args.cases, args.shift)
    print(f"\n{record['cases']} case(s), {record['cpu'].get('model')}, OMP_NUM_THREADS={record['omp_num_threads']}: "
          f"canet {record['canet_s_per_volume']:.3f} s, medpy {record['medpy_s_per_volume']:.3f} s per volume, "
          f"{record['ratio_of_means']:.1f}x (per case {record['ratio_min']:.1f}x to {record['ratio_max']:.1f}x); "
          f"largest difference {record['max_abs_difference']:.2e}")
    if args.json is not None:
        from canet.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
