"""Speed of the training loader alone: batches per second and seconds per batch.

Builds the real training loader (paper settings by default: 2 labeled + 2
unlabeled rows of 112 x 112 x 80, the SDM of each labeled patch as an extra
target computed in the workers) on the LA benchmark, decodes and caches the
volumes, then times ``--batches`` batches after ``--warmup`` untimed ones.
Compare the seconds per batch with the trainer's seconds per training step:
the loader keeps up when it is the smaller of the two.

Usage:
    python benchmarks/loader_speed.py                       # ../shared/data/LA, 2 workers
    python benchmarks/loader_speed.py --batches 20 --workers 0
    python benchmarks/loader_speed.py --data /tmp/synth --labeled 4 --patch 64 64 48
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _sdm_targets(num_classes: int):
    """The SDM extra target: canet.losses' if present, else a scipy stand-in of the same cost."""
    try:
        from canet.losses.sdm import SDMTargets

        return SDMTargets(num_classes), "canet.losses.sdm.SDMTargets"
    except ImportError:
        return _StandInSDM(), "scipy distance_transform_edt stand-in"


class _StandInSDM:
    """Normalised signed distance (outside positive) from two Euclidean distance transforms."""

    def __call__(self, label: np.ndarray) -> dict[str, np.ndarray]:
        from scipy import ndimage

        mask = label > 0
        if not mask.any() or mask.all():
            return {"sdm": np.zeros((1, *label.shape), np.float32)}
        out = ndimage.distance_transform_edt(~mask)
        inside = ndimage.distance_transform_edt(mask)
        sdm = out / max(out.max(), 1e-8) - inside / max(inside.max(), 1e-8)
        return {"sdm": sdm[None].astype(np.float32)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "LA"),
                        help="LA folder or datalist (default ../shared/data/LA)")
    parser.add_argument("--labeled", type=int, default=16, help="labeled training cases (default 16)")
    parser.add_argument("--patch", nargs=3, type=int, default=[112, 112, 80], metavar=("X", "Y", "Z"))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--labeled-bs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--no-cache", action="store_true", help="decode volumes for every patch")
    parser.add_argument("--no-sdm", action="store_true", help="no SDM extra target")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)

    from canet.data import build_train_loader, open_dataset
    from canet.errors import CanetError

    try:
        spec = open_dataset(args.data, labeled=args.labeled)
    except CanetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    extra, extra_name = (None, "none") if args.no_sdm else _sdm_targets(spec.num_classes)
    loader = build_train_loader(
        spec, tuple(args.patch), args.batch_size, args.labeled_bs, args.seed,
        num_workers=args.workers, extra_targets=extra, cache=not args.no_cache,
    )
    print(f"data: {args.data} ({len(spec.labeled)} labeled, {len(spec.unlabeled)} unlabeled)")
    print(f"batch: {args.labeled_bs} labeled + {args.batch_size - args.labeled_bs} unlabeled, "
          f"patch {tuple(args.patch)}, workers {args.workers}, cache {not args.no_cache}, "
          f"extra target: {extra_name}")
    print(f"host: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")

    t0 = time.perf_counter()
    loader.source.preload()
    if not args.no_cache:
        print(f"decode + cache: {time.perf_counter() - t0:.1f} s, "
              f"{loader.source.cached_bytes / 2**30:.2f} GiB in memory")
    t1 = time.perf_counter()
    for _ in range(args.warmup):
        next(loader)
    print(f"first {args.warmup} batches (worker start-up included): {time.perf_counter() - t1:.2f} s")
    t2 = time.perf_counter()
    for _ in range(args.batches):
        batch = next(loader)
    dt = time.perf_counter() - t2
    keys = ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items() if hasattr(v, "shape"))
    print(f"batch tensors: {keys}")
    print(f"loader alone: {args.batches / dt:.2f} batches/s, {dt / args.batches:.3f} s per batch "
          f"({args.batches} batches in {dt:.1f} s)")
    loader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
