"""LA-lite: a reduced protocol on the real LA data that finishes on a 2-core CPU.

The paper's protocol (6000 iterations at 112x112x80) takes days on a CPU. LA-lite
keeps the real data and the real splits but shrinks everything else:

* every LA volume is downsampled 2x per axis (image trilinear, label nearest) and
  written, in the LA layout, under ``WORK/data`` (made once, reused afterwards);
* patch 64x64x32, batch 2 labeled + 2 unlabeled (the supervised baseline: its
  config's 4 labeled),
  16 labeled cases (the first 16 of train.list) and the other 64 unlabeled;
* a fixed iteration budget, with the lr drops and the adversarial ramp-up at the
  same fractions of training as the paper's (lr x0.1 at 2500/6000 and 3800/6000 of
  the budget; ramp-up step every 150/6000 of it);
* evaluation of the last checkpoint on the 20 test volumes at that scale, in the
  `reference` sliding-window mode with largest-connected-component post-processing.

Every method runs with the same seed and budget, one after the other, and the script
prints a Markdown table (mean ± std over the 20 test cases) with wall time, then the
paired per-case comparison of every method with the first one (``canet compare``'s
functions, :mod:`canet.comparison`: mean difference, 95 % bootstrap CI, Wilcoxon p,
cases better / worse), also written to ``WORK/compare.md`` and ``WORK/compare.json``.
Runs of the same methods with other seeds in other work folders (``--seed-work``)
join each method's group as more seeds (per-case means over seeds, seed std beside
the difference).

Usage:
    python benchmarks/la_lite.py --methods vnet canet sassnet --iterations 1000
    python benchmarks/la_lite.py --prepare-only
    python benchmarks/la_lite.py --methods vnet-bs2 canet --compare-only \
        --seed-work runs/la_lite_seed1338 runs/la_lite_seed1339
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from canet.comparison import Comparison

REPO = Path(__file__).resolve().parents[1]
CASES_DIR = "2018LA_Seg_Training Set"
# Packaged config (`canet configs`) per method name.
CONFIGS = {
    "vnet": "la_vnet_16",
    "canet": "la_canet_16",
    "sassnet": "la_sassnet_16",
    "uamt": "la_uamt_16",
    "canet-reuse": "la_canet_16",
    "vnet-bs2": "la_vnet_16",
}
# Extra ``--set`` overrides per method name (variants of a shipped config).
EXTRA_SETS = {
    # CA-Net with the discriminator step fed the generator step's own (detached)
    # outputs instead of a second generator forward: measures what the speed option
    # `train.d_step_reuse_outputs` does to results.
    "canet-reuse": ["train.d_step_reuse_outputs=true"],
    # The supervised baseline with as many labeled patches per iteration as the
    # semi-supervised methods get (2 instead of its config's 4).
    "vnet-bs2": ["data.batch_size=2", "data.labeled_bs=2"],
}
PAPER_ITERATIONS = 6000
PAPER_MILESTONES = (2500, 3800)


def downsample_case(src: Path, dst: Path, factor: int = 2) -> tuple[int, int, int]:
    """Write ``src`` (an LA mri_norm2.h5) downsampled by ``factor`` per axis to ``dst``."""
    with h5py.File(src, "r") as f:
        image = f["image"][...].astype(np.float32)
        label = f["label"][...].astype(np.uint8)
    zoom = 1.0 / factor
    small_image = ndimage.zoom(image, zoom, order=1).astype(np.float32)
    small_label = ndimage.zoom(label, zoom, order=0).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("image", data=small_image, compression="gzip", compression_opts=1)
        f.create_dataset("label", data=small_label, compression="gzip", compression_opts=1)
    os.replace(tmp, dst)
    return small_image.shape  # type: ignore[return-value]


def prepare(la_root: Path, out: Path, factor: int = 2) -> Path:
    """Downsampled copy of the LA benchmark under ``out`` (skips cases already written)."""
    ids: list[str] = []
    for split in ("train.list", "test.list"):
        lines = (la_root / split).read_text().split()
        ids += lines
        out.mkdir(parents=True, exist_ok=True)
        (out / split).write_text("\n".join(lines) + "\n")
    shapes = []
    for case in ids:
        dst = out / CASES_DIR / case / "mri_norm2.h5"
        if dst.is_file():
            continue
        shapes.append(downsample_case(la_root / CASES_DIR / case / "mri_norm2.h5", dst, factor))
    if shapes:
        arr = np.array(shapes)
        print(f"prepared {len(shapes)} cases, shapes {arr.min(0).tolist()} .. {arr.max(0).tolist()}")
    return out


def canet_command(*args: str) -> list[str]:
    """``canet ARGS...`` run by this interpreter (no ``canet`` on PATH needed)."""
    return [sys.executable, "-m", "canet.cli.main", *args]


def run(cmd: list[str], log: Path) -> float:
    """Run ``cmd``, teeing its output to ``log``; returns wall seconds; exits on failure."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}); see {log}")
    return seconds


def recorded_train_seconds(run_dir: Path) -> float:
    """Training wall time of a finished run: ``train_seconds.txt``, else the run folder's
    timestamps (start time in environment.json to the last checkpoint's mtime)."""
    saved = run_dir / "train_seconds.txt"
    if saved.is_file():
        return float(saved.read_text())
    start = datetime.fromisoformat(json.loads((run_dir / "environment.json").read_text())["time"])
    return (run_dir / "checkpoints" / "last.pt").stat().st_mtime - start.timestamp()


def train_and_evaluate(method: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    run_dir = work / method
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "la_lite.log"
    summary_path = run_dir / "eval" / "summary.json"
    if summary_path.is_file():  # finished earlier: report it as it was measured
        print(f"{method}: finished earlier, reusing {summary_path}")
        summary = json.loads(summary_path.read_text())
        return {"method": method, "train_s": recorded_train_seconds(run_dir), "eval_s": float("nan"),
                "summary": summary}
    m1, m2 = (round(args.iterations * m / PAPER_ITERATIONS) for m in PAPER_MILESTONES)
    train_cmd = canet_command(
        "train",
        "--config", CONFIGS[method],
        "--data", str(data),
        "--out", str(run_dir),
        "--iterations", str(args.iterations),
        "--patch-size", "64", "64", "32",
        "--labeled", "16",
        "--seed", str(args.seed),
        "--device", "cpu",
        "--quiet",
        "--set", f"optimizer.milestones=[{m1},{m2}]",
        "--set", f"train.checkpoint_every={max(args.iterations // 4, 1)}",
        "--set", f"loss.rampup_interval={max(round(150 * args.iterations / PAPER_ITERATIONS), 1)}",
    )  # fmt: skip
    for override in EXTRA_SETS.get(method, []):
        train_cmd += ["--set", override]
    if (run_dir / "checkpoints" / "last.pt").is_file():
        train_cmd = canet_command("train", "--resume", str(run_dir), "--quiet")
    train_s = run(train_cmd, log)
    (run_dir / "train_seconds.txt").write_text(f"{train_s:.1f}\n")
    eval_dir = run_dir / "eval"
    eval_s = run(
        canet_command(
            "evaluate", str(run_dir / "checkpoints" / "last.pt"),
            "--data", str(data), "--split", "test", "--mode", "reference",
            "--out", str(eval_dir),
        ),  # fmt: skip
        log,
    )
    summary = json.loads((eval_dir / "summary.json").read_text())
    return {"method": method, "train_s": train_s, "eval_s": eval_s, "summary": summary}


def table(results: list[dict], iterations: int) -> str:
    lines = [
        "| method | labeled + unlabeled | iterations | Dice % | Jaccard % | 95HD (vox) | ASD (vox) | train min | eval min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]

        def ms(key: str, scale: float = 1.0, s: dict = s) -> str:
            mean, std = s[key]["mean"], s[key]["std"]
            if mean is None:
                return "n/a"
            return f"{mean * scale:.2f} ± {std * scale:.2f}"

        data = "16 + 0" if r["method"].startswith("vnet") else "16 + 64"
        lines.append(
            f"| {r['method']} | {data} | {iterations} | {ms('dice', 100)} | {ms('jaccard', 100)} "
            f"| {ms('hd95')} | {ms('asd')} | {r['train_s'] / 60:.1f} | "
            + ("-" if r["eval_s"] != r["eval_s"] else f"{r['eval_s'] / 60:.1f}")
            + " |"
        )
    return "\n".join(lines)


def compare_methods(
    methods: list[str], works: list[Path], resamples: int = 10_000, seed: int = 0
) -> Comparison:
    """Paired comparison of every method with the first (a :class:`canet.comparison.Comparison`).

    Each method's group holds ``WORK/<method>/eval`` of every work folder in
    ``works`` that has it (one evaluation per seed). Raises ``CanetError`` when a
    method has no evaluation in any of them.
    """
    from canet.comparison import compare_groups, find_evaluation, load_group
    from canet.errors import CanetError

    groups = []
    for method in methods:
        folders = [w / method for w in works if find_evaluation(w / method) is not None]
        if not folders:
            raise CanetError(f"no evaluation of {method!r} in {', '.join(str(w / method) for w in works)}")
        groups.append(load_group(folders, name=method))
    return compare_groups(groups, resamples=resamples, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--la", type=Path, default=REPO.parent / "shared" / "data" / "LA")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "la_lite")
    parser.add_argument("--methods", nargs="+", default=["vnet", "canet"], choices=list(CONFIGS))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--seed-work", type=Path, nargs="+", default=[],
                        help="work folders with runs of the same methods under other seeds (compared as seeds)")
    parser.add_argument("--compare-only", action="store_true",
                        help="no training: compare the methods' existing evaluations and write WORK/compare.*")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    args = parser.parse_args()

    if args.compare_only:
        from canet.errors import CanetError

        try:
            comparison = compare_methods(args.methods, [args.work, *args.seed_work], args.resamples)
        except CanetError as exc:
            sys.exit(f"error: {exc}")
        print(comparison.markdown(), end="")
        print("wrote", *comparison.write(args.work))
        return
    data = prepare(args.la, args.work / "data")
    if args.prepare_only:
        return
    results = [train_and_evaluate(m, data, args.work, args) for m in args.methods]
    text = table(results, args.iterations)
    from canet.device import cpu_info

    cpu = cpu_info()["model"]
    print(f"\nLA-lite on {cpu}, {os.cpu_count()} cores, seed {args.seed}\n")
    if len(args.methods) > 1 or args.seed_work:
        comparison = compare_methods(args.methods, [args.work, *args.seed_work], args.resamples)
        comparison.write(args.work)
        text += "\n\n" + comparison.markdown().rstrip("\n")
    print(text)
    (args.work / "results.md").write_text(text + "\n")
    (args.work / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
