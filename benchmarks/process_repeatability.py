"""Do fresh processes compute the same bits? Fixed inputs, many processes, one tally.

The kill-and-resume test (tests/benchmarks/test_protocol_kill.py) asks two
training runs to end with the same weights bit for bit. On one Intel Xeon VM a
run sometimes came out different in its last bits, the resumed run as well as
the uninterrupted one. This script asks whether the platform itself (torch, MKL,
oneDNN, the CPU) gives one process other bits than the next for the very same
computation, with nothing of canet's training involved.

Each child process seeds torch, builds fixed inputs and hashes the outputs of
several probes:

* ``sin``, ``tanh``, ``sigmoid``, ``gelu`` (exact, erf): elementwise on a 512x512 tensor;
* ``mm_qkv``, ``mm_mlp``: matmuls of the Trans-V bottleneck's shapes (245 tokens,
  hidden 168, MLP 3072);
* ``conv3d``: a 3x3x3 convolution, 16 to 32 channels on 32x32x32, forward and
  the gradients of input and weight;
* ``transv``: a small Trans-V generator (``n_filters`` 4, patch 32x32x32, eval
  mode), forward and the gradients of all its weights.

The parent starts ``--processes`` children one after the other (the same
environment, ``OMP_NUM_THREADS`` as given) and counts, for each probe, how many
distinct results there were and how many processes gave each. A probe with more
than one result is not repeatable across processes on this machine.

Usage:
    python benchmarks/process_repeatability.py --processes 60
    python benchmarks/process_repeatability.py --processes 60 --json out.json
    MKL_CBWR=COMPATIBLE python benchmarks/process_repeatability.py --processes 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TOKENS, HIDDEN, MLP = 245, 168, 3072  # 7x7x5 bottleneck tokens of a 112x112x80 patch


def _digest(*tensors: Any) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _probes() -> dict[str, Callable[[], str]]:
    import torch
    import torch.nn.functional as F

    def elementwise(fn: Callable[[Any], Any]) -> Callable[[], str]:
        def run() -> str:
            torch.manual_seed(0)
            return _digest(fn(torch.randn(512, 512)))
        return run

    def mm(n_out: int) -> Callable[[], str]:
        def run() -> str:
            torch.manual_seed(1)
            return _digest(torch.randn(TOKENS, HIDDEN) @ torch.randn(HIDDEN, n_out))
        return run

    def conv3d() -> str:
        torch.manual_seed(2)
        x = torch.randn(1, 16, 32, 32, 32, requires_grad=True)
        w = torch.randn(32, 16, 3, 3, 3, requires_grad=True)
        y = F.conv3d(x, w, padding=1)
        y.square().mean().backward()
        return _digest(y, x.grad, w.grad)

    def transv() -> str:
        from canet.models import create_model

        torch.manual_seed(3)
        net = create_model("canet", n_filters=4, patch_size=(32, 32, 32)).eval()
        out = net(torch.randn(1, 1, 32, 32, 32))
        (out.seg.square().mean() + out.sdf.mean()).backward()
        return _digest(out.seg, out.sdf, *(p.grad for p in net.parameters() if p.grad is not None))

    return {
        "sin": elementwise(torch.sin),
        "tanh": elementwise(torch.tanh),
        "sigmoid": elementwise(torch.sigmoid),
        "gelu": elementwise(F.gelu),
        "mm_qkv": mm(3 * HIDDEN),
        "mm_mlp": mm(MLP),
        "conv3d": conv3d,
        "transv": transv,
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def child() -> None:
    """One process: print ``{probe: digest}`` as one JSON line."""
    print(json.dumps({name: run() for name, run in _probes().items()}))


def tally(results: Sequence[dict[str, str]]) -> dict[str, dict[str, int]]:
    """For each probe, how many processes gave each digest (most common first)."""
    names = list(results[0]) if results else []
    return {name: dict(Counter(r[name] for r in results).most_common()) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=40, help="child processes to start (default 40)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the children (default 2)")
    parser.add_argument("--json", type=Path, help="also write the tally and the environment to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child()
        return 0
    if args.processes < 2:
        parser.error(f"--processes must be at least 2, got {args.processes}")

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    started = _now()
    results = []
    for i in range(args.processes):
        done = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"child {i} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    counts = tally(results)

    import torch

    from canet.device import cpu_info

    cpu = cpu_info()
    print(f"{args.processes} processes, OMP_NUM_THREADS={args.threads}, torch {torch.__version__}, "
          f"{cpu['model']}, MKL_CBWR={os.environ.get('MKL_CBWR', '(unset)')}")
    for name, digests in counts.items():
        verdict = "repeatable" if len(digests) == 1 else f"{len(digests)} different results"
        print(f"  {name:8s} {verdict:24s} " + ", ".join(f"{d}: {n}" for d, n in digests.items()))
    if args.json:
        from canet.io import atomic_write_text

        record = {"started": started, "finished": _now(), "processes": args.processes,
                  "omp_num_threads": args.threads, "torch": torch.__version__, "cpu": cpu,
                  "mkl_cbwr": os.environ.get("MKL_CBWR"), "probes": counts}
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
