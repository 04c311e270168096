"""Training speed of CA-Net: plain fp32 path against the optimised path, in one run.

One CA-Net iteration = generator step (Trans-V forward + backward on a batch of
2 labeled + 2 unlabeled patches, D in eval mode) + discriminator step (the
generator re-predicts the batch without gradients, DAM forward + backward).

Variants, each measured in its own subprocess (so peak RSS is per variant) on the
same batches, one after the other in this one run:

* ``plain``: the original code's way: contiguous (NCDHW) fp32 tensors, eager
  mode, and the labeled cases' signed-distance maps computed on the training
  thread inside the step (timed as part of it).
* ``optimized``: ``channels_last_3d`` memory format, ``torch.compile`` of every
  graph ``train.compile`` compiles (the training forward, the discriminator and
  the D step's eval-mode generator forward; compile time excluded, reported
  separately), SDMs computed by the loader's workers off the critical path (not
  part of the step). Same maths, same D-step inputs.
* ``loader-sdm`` and ``loader-sdm+channels-last`` (optional, ``--each``): the
  steps from ``plain`` to ``optimized`` one at a time: SDMs from the loader's
  workers (eager, contiguous), then also ``channels_last_3d`` (eager); with
  ``optimized`` after them, each setting's own gain is read off one run.
* ``optimized+eager-d`` (optional, ``--eager-d``): ``optimized`` with the D
  step's eval-mode generator forward left eager, to tell whether compiling that
  forward pays on this machine.
* ``optimized+reuse`` (optional, ``--reuse``): also reuses the generator step's
  detached outputs for the D step instead of a second forward pass. That changes
  D's inputs (train-mode vs eval-mode outputs), so it is reported, not assumed.

Fused attention (``scaled_dot_product_attention``) is used by every variant: it
is how the model is written.

Also printed: the step's floating-point work (``torch.utils.flop_counter``) and
the achieved GFLOP/s of each variant against this machine's measured fp32 matmul
peak (a large ``torch.mm`` timed in the same run), and peak RSS of each variant.

Usage:
    python benchmarks/train_speed.py                       # 64x64x48 and 112x112x80
    python benchmarks/train_speed.py --patches 64,64,48 --iters 3 --no-compile
    python benchmarks/train_speed.py --patches 112,112,80 --eager-d   # does compiling the D forward pay?
    python benchmarks/train_speed.py --patches 112,112,80 --each      # each setting's own gain
    python benchmarks/train_speed.py --patches 112,112,80 --data ../shared/data/LA  # real LA cases, 16 labeled
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from canet.device import cpu_info


def matmul_peak_gflops(n: int = 4096, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an ``n x n`` by ``n x n`` ``torch.mm``."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


VARIANTS = ("plain", "loader-sdm", "loader-sdm+channels-last", "optimized", "optimized+eager-d", "optimized+reuse")


def build_trainer(
    root: Path, run_dir: Path, patch: tuple[int, int, int], variant: str, compile_: bool, labeled: int = 3
) -> Any:
    """The set-up CA-Net :class:`~canet.training.trainer.Trainer` of one variant (nothing compiled yet)."""
    from canet.training.config import config_from_dict
    from canet.training.trainer import Trainer

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    optimized = variant.startswith("optimized")
    channels_last = optimized or variant == "loader-sdm+channels-last"
    cfg = config_from_dict(
        {
            "method": "canet",
            "iterations": 10_000,
            "data": {
                "root": str(root),
                "labeled": labeled,
                "patch_size": list(patch),
                "batch_size": 4,
                "labeled_bs": 2,
                "num_workers": 0,
            },
            "train": {
                "device": "cpu",
                "channels_last": channels_last,
                "compile": optimized and compile_,
                "d_step_reuse_outputs": variant == "optimized+reuse",
                "deterministic": False,
            },
        }
    )
    trainer = Trainer(cfg, run_dir=run_dir, quiet=True, log=lambda _m: None)
    trainer.setup()
    if variant == "optimized+eager-d":
        trainer.g_eval = trainer.generator  # the D step's forward uncompiled
    return trainer


def worker(
    patch: tuple[int, int, int], variant: str, iters: int, warmup: int, count_flops: bool, compile_: bool,
    data: Path | None = None, labeled: int = 16,
) -> dict:
    """Time ``iters`` CA-Net iterations of ``variant`` after ``warmup`` ones (on ``data``, else synthetic volumes)."""
    from canet.data import write_synthetic_dataset
    from canet.losses.sdm import batch_sdm

    with tempfile.TemporaryDirectory() as tmp:
        if data is None:
            shape = tuple(max(p + 8, s) for p, s in zip(patch, (96, 96, 64)))
            root = write_synthetic_dataset(Path(tmp) / "data", n_train=6, n_test=0, seed=0, shape=shape)
            trainer = build_trainer(root, Path(tmp) / "run", patch, variant, compile_)
        else:
            trainer = build_trainer(data, Path(tmp) / "run", patch, variant, compile_, labeled=labeled)
        cfg = trainer.cfg
        batches = [next(trainer.loader) for _ in range(warmup + iters)]

        def step(batch: dict, i: int) -> None:
            if variant == "plain":
                # The original computes the SDM of the labeled cases inside the step.
                labels = batch["label"][: cfg.data.labeled_bs].numpy()
                batch = dict(batch)
                batch["sdm"] = torch.from_numpy(batch_sdm(labels))
            trainer.train_step(batch, i)

        start = time.perf_counter()
        step(batches[0], 0)
        first = time.perf_counter() - start
        for i in range(1, warmup):
            step(batches[i], i)
        flops = None
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                trainer.train_step(batches[warmup], warmup)
            flops = counter.get_total_flops()
        _reset_peak_rss()
        times = []
        for i in range(warmup, warmup + iters):
            start = time.perf_counter()
            step(batches[i], i)
            times.append(time.perf_counter() - start)
        rss = _peak_rss_mib()
    times.sort()
    return {
        "variant": variant,
        "patch": list(patch),
        "median_s": times[len(times) // 2],  # the upper median: of 2 timed steps, the slower
        "min_s": times[0],
        "first_step_s": first,
        "peak_rss_mib": rss,
        "flops": flops,
    }


def run_worker(patch: tuple[int, int, int], variant: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", variant,
        "--patches", ",".join(map(str, patch)),
        "--iters", str(args.iters), "--warmup", str(args.warmup),
    ]  # fmt: skip
    if args.no_compile:
        cmd.append("--no-compile")
    if args.data is not None:
        cmd += ["--data", str(args.data)]
    if variant == "plain":
        cmd.append("--count-flops")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"worker {variant} {patch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", nargs="+", default=["64,64,48", "112,112,80"])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (compile happens here)")
    parser.add_argument("--no-compile", action="store_true", help="optimised path without torch.compile")
    parser.add_argument("--reuse", action="store_true", help="also time the D-step output reuse")
    parser.add_argument("--each", action="store_true",
                        help="also time the steps between plain and optimized (loader SDMs, then channels_last)")
    parser.add_argument("--eager-d", action="store_true",
                        help="also time 'optimized' with the D step's generator forward left eager")
    parser.add_argument("--data", type=Path, default=None,
                        help="train on this dataset (e.g. ../shared/data/LA, 16 labeled) instead of synthetic volumes")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    patches = [tuple(int(v) for v in p.split(",")) for p in args.patches]
    if args.worker:
        result = worker(
            patches[0], args.worker, args.iters, args.warmup, args.count_flops, not args.no_compile,  # type: ignore[arg-type]
            args.data,
        )
        print(json.dumps(result))
        return

    peak = matmul_peak_gflops()
    print(f"# CA-Net training step on {cpu_info()['model']}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"# fp32 matmul peak (4096^3 torch.mm, best of 5): {peak:.1f} GFLOP/s")
    print(f"# batch 2 labeled + 2 unlabeled from {args.data or 'synthetic volumes'}; {args.warmup} warm-up + "
          f"{args.iters} timed iterations (median; of an even count, the upper one)\n")
    variants = ["plain", *(["loader-sdm", "loader-sdm+channels-last"] if args.each else []), "optimized"]
    variants += ["optimized+eager-d"] if args.eager_d else []
    variants += ["optimized+reuse"] if args.reuse else []
    rows = []
    for patch in patches:
        results = {v: run_worker(patch, v, args) for v in variants}
        flops = results["plain"]["flops"]
        base = results["plain"]["median_s"]
        for v in variants:
            r = results[v]
            rows.append(
                {
                    **r,
                    "speedup": base / r["median_s"],
                    "gflops_per_s": flops / r["median_s"] / 1e9,
                    "fraction_of_peak": flops / r["median_s"] / 1e9 / peak,
                    "step_tflop": flops / 1e12,
                }
            )
    print("| patch | variant | s/iteration | speed-up vs plain | TFLOP/step | GFLOP/s | % of matmul peak | peak RSS MiB | first step s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {'x'.join(map(str, r['patch']))} | {r['variant']} | {r['median_s']:.2f} | {r['speedup']:.2f}x "
            f"| {r['step_tflop']:.3f} | {r['gflops_per_s']:.1f} | {100 * r['fraction_of_peak']:.1f} "
            f"| {r['peak_rss_mib']:.0f} | {r['first_step_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
