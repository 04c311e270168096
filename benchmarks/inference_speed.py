"""Seconds per LA test volume: `reference` vs `fast` sliding-window inference, in one run.

Both modes run the same network (random initialisation with a fixed seed, or the
weights of --checkpoint) on the same CPU/GPU, one case after the other, so the
ratio compares like with like. For each case the script prints the time of each
mode and the Dice between the two modes' masks (their agreement); with a
checkpoint it also scores both masks against the ground truth.

The reference mode runs one window per forward pass, as the literature's test
loop does (--ref-batch-size changes that); the fast mode uses --overlap (default
0.5), Gaussian (or --weighting constant) weighting and --sw-batch-size windows per pass. Both keep the
largest connected component.

Usage:
    python benchmarks/inference_speed.py --cases 1                 # smoke run
    python benchmarks/inference_speed.py --checkpoint run/checkpoints/best_val.pt
    python benchmarks/inference_speed.py --json speed.json --cases 20

Goal (issue 5): fast >= 5x faster than reference, mean Dice within 0.3 points.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from canet.inferers import predict_volume, window_starts
from canet.inferers.sliding_window import REFERENCE_STRIDES, pad_amounts
from canet.metrics import dice

REPO = Path(__file__).resolve().parents[1]
CASES_DIR = "2018LA_Seg_Training Set"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "LA", help="LA root (with test.list)")
    p.add_argument("--cases", type=int, default=20, help="number of test cases (default all 20)")
    p.add_argument("--checkpoint", type=Path, default=None, help="canet checkpoint (default: random init)")
    p.add_argument("--model", default="canet", help="model for random init (default canet = Trans-V)")
    p.add_argument("--patch", type=int, nargs=3, default=None, help="patch size (default: checkpoint's, else 112 112 80)")
    p.add_argument("--overlap", type=float, default=0.5, help="fast-mode overlap (default 0.5)")
    p.add_argument("--sw-batch-size", type=int, default=4, help="fast-mode windows per forward (default 4)")
    p.add_argument("--ref-batch-size", type=int, default=1, help="reference-mode windows per forward (default 1)")
    p.add_argument("--weighting", default="gaussian", choices=["gaussian", "constant"], help="fast-mode window weighting")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.cases < 1:
        p.error(f"--cases must be at least 1, got {args.cases}")
    return args


def load_network(args: argparse.Namespace) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    if args.checkpoint is not None:
        from canet.checkpoint import load_checkpoint
        from canet.evaluation import checkpoint_settings
        from canet.models import build_generator

        payload = load_checkpoint(args.checkpoint)
        model = build_generator(payload)
        patch = tuple(args.patch) if args.patch else checkpoint_settings(payload)["patch_size"]
    else:
        from canet.models import create_model

        torch.manual_seed(args.seed)
        patch = tuple(args.patch) if args.patch else (112, 112, 80)
        kwargs = {"patch_size": patch} if args.model == "canet" else {}
        model = create_model(args.model, **kwargs)
    return model.to(args.device).eval(), patch  # type: ignore[return-value]


def read_case(root: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(root / CASES_DIR / case_id / "mri_norm2.h5", "r") as f:
        return f["image"][:].astype(np.float32), f["label"][:].astype(np.uint8)


def count_windows(shape, patch, mode: str, overlap: float) -> int:
    """Number of windows a mode visits on a volume of ``shape``."""
    total = 1
    for size, p, stride in zip(shape, patch, REFERENCE_STRIDES):
        padded = size + sum(pad_amounts(size, p))
        starts = window_starts(padded, p, mode, stride=stride) if mode == "reference" else window_starts(padded, p, "fast", overlap=overlap)
        total *= len(starts)
    return total


def main(argv=None) -> int:
    args = parse_args(argv)
    test_list = args.data / "test.list"
    if not test_list.is_file():
        print(f"error: LA data not found at {args.data} (no test.list)", file=sys.stderr)
        return 2
    ids = [line.strip() for line in test_list.read_text().splitlines() if line.strip()][: args.cases]
    model, patch = load_network(args)
    print(
        f"model: {args.checkpoint or args.model + ' (random init, seed ' + str(args.seed) + ')'}; patch {patch}; "
        f"device {args.device}; torch threads {torch.get_num_threads()}; {platform.processor() or platform.machine()}"
    )
    print(f"fast: overlap {args.overlap}, {args.weighting} weighting, {args.sw_batch_size} windows/pass; reference: {args.ref_batch_size} window/pass")
    # one untimed pass so that lazy initialisation does not land on the first timed mode
    with torch.no_grad():
        model(torch.zeros(1, 1, *patch, device=args.device))

    rows = []
    print(f"{'case':<22} {'shape':<16} {'windows':>8} {'ref s':>8} {'fast s':>8} {'ratio':>6} {'agree':>7}" + (f" {'dice ref':>9} {'dice fast':>9}" if args.checkpoint else ""))
    for case_id in ids:
        image, label = read_case(args.data, case_id)
        t0 = time.perf_counter()
        ref_mask, _ = predict_volume(model, image, patch, mode="reference", device=args.device, sw_batch_size=args.ref_batch_size)
        t1 = time.perf_counter()
        fast_mask, _ = predict_volume(
            model, image, patch, mode="fast", device=args.device, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
            weighting=args.weighting,
        )
        t2 = time.perf_counter()
        row = {
            "case": case_id,
            "shape": list(image.shape),
            "reference_s": t1 - t0,
            "fast_s": t2 - t1,
            "agreement_dice": dice(ref_mask, fast_mask),
            "reference_windows": count_windows(image.shape, patch, "reference", args.overlap),
            "fast_windows": count_windows(image.shape, patch, "fast", args.overlap),
            "reference_fg": int(ref_mask.sum()),
            "fast_fg": int(fast_mask.sum()),
            "voxels": int(ref_mask.size),
        }
        if args.checkpoint is not None:
            row["dice_reference"] = dice(ref_mask, label)
            row["dice_fast"] = dice(fast_mask, label)
        rows.append(row)
        line = (
            f"{case_id:<22} {'x'.join(map(str, image.shape)):<16} {str(row['reference_windows']) + '/' + str(row['fast_windows']):>8} {row['reference_s']:>8.2f} {row['fast_s']:>8.2f} "
            f"{row['reference_s'] / row['fast_s']:>6.2f} {row['agreement_dice']:>7.4f}"
        )
        if args.checkpoint is not None:
            line += f" {row['dice_reference']:>9.4f} {row['dice_fast']:>9.4f}"
        print(line, flush=True)

    ref_total = sum(r["reference_s"] for r in rows)
    fast_total = sum(r["fast_s"] for r in rows)
    result = {
        "cases": len(rows),
        "patch_size": list(patch),
        "device": args.device,
        "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
        "overlap": args.overlap,
        "weighting": args.weighting,
        "sw_batch_size": args.sw_batch_size,
        "ref_batch_size": args.ref_batch_size,
        "reference_s_per_volume": ref_total / len(rows),
        "fast_s_per_volume": fast_total / len(rows),
        "speedup": ref_total / fast_total,
        "window_ratio": sum(r["reference_windows"] for r in rows) / sum(r["fast_windows"] for r in rows),
        "agreement_dice_mean": statistics.fmean(r["agreement_dice"] for r in rows),
        "rows": rows,
    }
    print(
        f"\nreference {result['reference_s_per_volume']:.2f} s/volume, fast {result['fast_s_per_volume']:.2f} s/volume: "
        f"fast is {result['speedup']:.2f}x faster (goal >= 5x)"
    )
    print(f"windows visited: {result['window_ratio']:.2f}x fewer in fast mode")
    print(f"agreement (Dice between the two modes' masks): mean {result['agreement_dice_mean']:.4f}")
    if all(min(r["reference_fg"], r["voxels"] - r["reference_fg"]) < 0.05 * r["voxels"] for r in rows):
        print("note: the masks are nearly empty or nearly full (random weights?); agreement says little")
    if args.checkpoint is not None:
        d_ref = statistics.fmean(r["dice_reference"] for r in rows)
        d_fast = statistics.fmean(r["dice_fast"] for r in rows)
        diffs = [100 * (r["dice_fast"] - r["dice_reference"]) for r in rows]
        result.update(
            {
                "dice_reference_mean": d_ref,
                "dice_fast_mean": d_fast,
                "dice_difference_median_points": statistics.median(diffs),
                "cases_differing_over_1_point": sum(abs(d) > 1.0 for d in diffs),
            }
        )
        print(
            f"mean Dice vs ground truth: reference {100 * d_ref:.2f}, fast {100 * d_fast:.2f} "
            f"(difference {100 * (d_fast - d_ref):+.2f} points; goal within 0.3)"
        )
        print(
            f"per case, fast minus reference: median {result['dice_difference_median_points']:+.2f} points, "
            f"range {min(diffs):+.2f} to {max(diffs):+.2f}; "
            f"{result['cases_differing_over_1_point']} of {len(rows)} cases differ by more than 1 point"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from canet.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
