"""What one GPU (or this CPU) does with the paper's training and inference: one JSON.

Measures, each training variant in its own subprocess (so peak memory is its own):

* ``train``: seconds per iteration of ``--config`` (default ``la_canet_16``: one
  generator step + one discriminator step, 2 labeled + 2 unlabeled patches of
  112 x 112 x 80, the batches drawn by the real loader) after ``--warmup``
  untimed iterations, for the variants ``exact`` (the paper's fp32 semantics,
  ``train.profile: exact``), ``fast`` (``train.profile: fast``),
  ``fast-contiguous`` (the fast profile in the standard memory format, so that
  what bf16 gains and what ``channels_last_3d`` gains can be told apart) and,
  unless ``--no-compile``, ``fast+compile`` (also ``train.compile: true``) and
  ``fast+compile+eager-d`` (the same with the D step's eval-mode generator
  forward left eager: whether compiling that forward pays). Each reports
  ``first_batch_s`` (the first batch: the loader's start and data decoding),
  ``first_step_s`` (the first step alone, compilation and cuDNN's benchmark
  search included), the steady-state ``sec_per_it`` (at most
  ``--max-timed-seconds`` of timed iterations), the peak GPU memory of the
  steady state (``peak_gpu_mib``, counted from after the warm-up, so without
  cuDNN's benchmark workspaces) and of the warm-up (``peak_gpu_mib_warmup``),
  and on CUDA the host-device synchronisations per iteration
  (``host_syncs_per_it``, CUDA's sync debug mode over 3 iterations; the fast
  profile aims at 0);
* ``loader``: batches per second of the training loader alone, with the fast
  profile's number of workers (and with 2);
* ``inference``: seconds per test volume of sliding-window inference with the
  (untrained) generator in ``reference`` mode and in ``fast`` mode, both fp32,
  and on a GPU with bf16 also ``fast`` mode with bf16 autocast
  (``fast_bf16_s_per_volume``, with the largest probability difference to
  fp32 on the first volume; None on the CPU); speed does not depend on the weights;
* ``side_by_side`` (unless ``--no-side-by-side``): ``--config`` and
  ``--pair-config`` (default ``la_vnet_16``) trained at the same time on the
  same device with the fast settings, against each alone: iterations per
  minute of each, in total, and how much sooner both runs would finish side by
  side than one after the other (``speedup_for_both`` > 1: run them side by side).

The compile verdict ``compile_pays_off`` says whether the saving per iteration,
over ``--run-iterations`` (default 6000) iterations, exceeds the compile time;
``compile_d_forward_pays_off`` whether ``fast+compile`` beats ``fast+compile+eager-d``.

Usage (GPU machine, the LA data in data/LA)::

    python benchmarks/gpu_probe.py --data data/LA --out probe.json

An LA folder is cut to its first ``--probe-cases`` training cases on disk (and
``--infer-cases`` test cases): speed per iteration does not depend on how many
cases there are, but each process decodes all of them at start, and the first
of the two uploads holds only part of LA. Measurements run in order of
importance (exact, fast, inference, side by side, loader, fast-contiguous,
compile) and none starts that would end after ``--budget`` seconds, judged by
how long the training jobs so far took: a slow exact variant cannot leave
inference and the side-by-side verdict without time. At tiny settings on
the CPU (what the tests run)::

    python benchmarks/gpu_probe.py --data SYNTH --device cpu --patch 32 32 32 --labeled 2 \\
        --iterations 2 --warmup 1 --set model.n_filters=4 --set discriminator.ndf=4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "PROBE_RESULT "
LA_FOLDER = "2018LA_Seg_Training Set"
TRAIN_VARIANTS = ("exact", "fast", "fast-contiguous", "fast+compile", "fast+compile+eager-d")


# --------------------------------------------------------------------------- helpers


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def la_subset_root(root: Path, work: Path, n_train: int, n_test: int) -> Path:
    """An LA root in ``work`` with the first ``n_train`` / ``n_test`` cases of the lists present on disk.

    Speed per iteration does not depend on how many cases there are to draw
    from, but every training process decodes all of them first: a subset keeps
    the probe's start-up short, and works with only part of LA uploaded.

    Raises:
        SystemExit: ``root`` is not an LA folder or holds no training case.
    """
    cases = root / LA_FOLDER
    if not (root / "train.list").is_file() or not cases.is_dir():
        raise SystemExit(f"error: {root} is not an LA folder (train.list and {LA_FOLDER!r} needed)")
    work.mkdir(parents=True, exist_ok=True)
    for name, limit in (("train.list", n_train), ("test.list", n_test)):
        listed = root / name
        ids = [line.strip() for line in listed.read_text().splitlines() if line.strip()] if listed.is_file() else []
        kept = [i for i in ids if (cases / i / "mri_norm2.h5").is_file()][:limit]
        if name == "train.list" and not kept:
            raise SystemExit(f"error: no training case of {root} is on disk")
        (work / name).write_text("".join(f"{i}\n" for i in kept))
    link = work / LA_FOLDER
    if not link.exists():
        link.symlink_to(cases.resolve(), target_is_directory=True)
    return work


def _config(args: argparse.Namespace, name: str, variant: str) -> Any:
    """The training config of one probe run (``variant``: exact, fast, fast+compile)."""
    from canet.training.config import load_config, parse_overrides

    sets = parse_overrides(args.set)
    sets.update({
        "data.root": str(args.data),
        "train.device": args.device,
        "train.log_every": 10**6,
        "train.checkpoint_every": 10**6,
        "train.keep_every": 0,
        "validation.every": 0,
    })
    if args.patch:
        sets["data.patch_size"] = list(args.patch)
    if args.labeled is not None:
        sets["data.labeled"] = args.labeled
    if variant not in TRAIN_VARIANTS:
        raise SystemExit(f"error: training variant must be one of {', '.join(TRAIN_VARIANTS)}, got {variant!r}")
    if variant != "exact":
        sets["train.profile"] = "fast"
    if variant.startswith("fast+compile"):
        sets["train.compile"] = True
    if args.workers is not None:
        sets["data.num_workers"] = args.workers
    return load_config(name, sets)


# --------------------------------------------------------------------------- worker jobs


def standard_layout(trainer: Any) -> None:
    """Put a set-up trainer's networks and batches into the standard memory format (``fast-contiguous``)."""
    import torch

    trainer.cfg.train.channels_last = False
    for net in (trainer.generator, trainer.discriminator, trainer.teacher):
        if net is not None:
            net.to(memory_format=torch.contiguous_format)


def job_train(args: argparse.Namespace, name: str, variant: str, barrier: str | None) -> dict[str, Any]:
    """Time up to ``args.iterations`` training iterations of config ``name`` after ``args.warmup``.

    The timed loop also stops once ``args.max_timed_seconds`` have passed (after
    at least one iteration); ``iterations`` says how many were timed.
    """
    import torch

    from canet.training.trainer import Trainer

    cfg = _config(args, name, variant)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", quiet=True)
        t0 = time.perf_counter()
        trainer.setup()
        setup_s = time.perf_counter() - t0
        if variant == "fast-contiguous":
            standard_layout(trainer)
        if variant == "fast+compile+eager-d":
            trainer.g_eval = trainer.generator  # the D step's forward uncompiled
        device = trainer.device
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            batch = next(trainer.loader)  # the loader starts: workers, decoding every case
            first_batch_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            trainer.train_step(batch, 0)
            _sync(device)
            first_step_s = time.perf_counter() - t0
            for i in range(1, args.warmup):
                trainer.train_step(next(trainer.loader), i)
            _sync(device)
            peak_warmup = _peak_mib(device)
            if device.type == "cuda":
                # The steady state's peak: without cuDNN's benchmark workspaces of the first steps.
                torch.cuda.reset_peak_memory_stats(device)
            if barrier:
                _wait_barrier(Path(barrier), args.pair_timeout)
            first = max(args.warmup, 1)
            timed = 0
            t0 = time.perf_counter()
            while timed < args.iterations:
                trainer.train_step(next(trainer.loader), first + timed)
                timed += 1
                if time.perf_counter() - t0 > args.max_timed_seconds:
                    break
            _sync(device)
            elapsed = time.perf_counter() - t0
            trainer._flush_finite()
            syncs = count_syncs(trainer, first + timed) if device.type == "cuda" else None
        finally:
            trainer.loader.close()
        return {
            "config": name,
            "variant": variant,
            "sec_per_it": elapsed / timed,
            "iterations": timed,
            "warmup": args.warmup,
            "first_batch_s": first_batch_s,
            "first_step_s": first_step_s,
            "setup_s": setup_s,
            "peak_gpu_mib": _peak_mib(device),
            "peak_gpu_mib_warmup": peak_warmup,
            "host_syncs_per_it": syncs,
            "settings": {
                "amp": trainer.cfg.train.amp,
                "channels_last": trainer.cfg.train.channels_last,
                "compile": trainer.cfg.train.compile,
                "compile_d_forward": trainer.g_eval is not trainer.generator,
                "deterministic": trainer.cfg.train.deterministic,
                "tf32": trainer.flags.tf32,
                "cudnn_benchmark": trainer.flags.benchmark,
                "num_workers": trainer.cfg.data.num_workers,
                "patch_size": list(trainer.cfg.data.patch_size),
            },
            "device": str(device),
        }


def count_syncs(trainer: Any, first: int, iterations: int = 3) -> float:
    """Host-device synchronisations per training iteration (CUDA's sync debug mode, warn level)."""
    import warnings

    import torch

    batches = [next(trainer.loader) for _ in range(iterations)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for k, batch in enumerate(batches):
                trainer.train_step(batch, first + k)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    found = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return len(found) / iterations


def _wait_barrier(folder: Path, timeout: float) -> None:
    """Say this process is ready in ``folder``; wait until the other one is too."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ready_{os.getpid()}").write_text("")
    start = time.monotonic()
    while len(list(folder.glob("ready_*"))) < 2:
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.05)


def job_loader(args: argparse.Namespace, name: str, workers: int) -> dict[str, Any]:
    """Batches per second of the training loader alone with ``workers`` workers."""
    import torch

    from canet.data import build_train_loader, open_dataset
    from canet.losses import SDMTargets

    cfg = _config(args, name, "fast")
    spec = open_dataset(cfg.data.root, labeled=cfg.data.labeled)
    loader = build_train_loader(
        spec, cfg.data.patch_size, cfg.data.batch_size, cfg.data.labeled_bs, seed=cfg.seed,
        num_workers=workers, extra_targets=SDMTargets(spec.num_classes),
        pin_memory=args.device != "cpu" and torch.cuda.is_available(),
    )
    try:
        for _ in range(max(args.loader_batches // 5, 1)):
            next(loader)
        t0 = time.perf_counter()
        for _ in range(args.loader_batches):
            next(loader)
        elapsed = time.perf_counter() - t0
    finally:
        loader.close()
    return {"workers": workers, "batches_per_s": args.loader_batches / elapsed, "batches": args.loader_batches}


def job_inference(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Seconds per test volume in reference and fast mode (untrained generator)."""
    import torch

    from canet.data import load_case, open_dataset
    from canet.inferers import predict_volume
    from canet.training.methods import build_method
    from canet.training.trainer import resolve_device

    cfg = _config(args, name, "fast")
    device = resolve_device(cfg.train.device)
    spec = open_dataset(cfg.data.root, labeled=cfg.data.labeled)
    cases = (spec.test or spec.labeled)[: args.infer_cases]
    volumes = [load_case(c, with_label=False) for c in cases]
    torch.manual_seed(0)
    from canet.training.config import resolve

    method = build_method(resolve(cfg), spec.num_classes)
    model = method.build_generator().to(device).eval()
    out: dict[str, Any] = {"cases": [v.case_id for v in volumes],
                           "shapes": [list(v.image.shape) for v in volumes]}
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    variants = [("reference", "none"), ("fast", "none")] + ([("fast", "bf16")] if bf16 else [])
    first: dict[str, Any] = {}
    for mode, amp in variants:
        key = mode if amp == "none" else f"{mode}_{amp}"
        _, first[key] = predict_volume(model, volumes[0].image, cfg.data.patch_size, mode=mode, device=device,
                                       amp=amp)  # warm-up
        _sync(device)
        times = []
        for vol in volumes:
            t0 = time.perf_counter()
            predict_volume(model, vol.image, cfg.data.patch_size, mode=mode, device=device, amp=amp)
            _sync(device)
            times.append(time.perf_counter() - t0)
        out[f"{key}_s_per_volume"] = statistics.fmean(times)
    out["reference_over_fast"] = out["reference_s_per_volume"] / out["fast_s_per_volume"]
    if bf16:
        out["fast_over_fast_bf16"] = out["fast_s_per_volume"] / out["fast_bf16_s_per_volume"]
        out["bf16_max_abs_prob_diff"] = float(abs(first["fast_bf16"] - first["fast"]).max())
    else:
        out["fast_bf16_s_per_volume"] = None
        out["bf16_skipped"] = "bf16 autocast needs a CUDA GPU that computes in bf16"
    out["peak_gpu_mib"] = _peak_mib(device)
    return out


# --------------------------------------------------------------------------- driver


def _worker_cmd(args: argparse.Namespace, job: list[str]) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--data", str(args.data), "--device", args.device,
           "--iterations", str(args.iterations), "--warmup", str(args.warmup),
           "--loader-batches", str(args.loader_batches), "--infer-cases", str(args.infer_cases),
           "--pair-timeout", str(args.pair_timeout), "--max-timed-seconds", str(args.max_timed_seconds)]
    if args.patch:
        cmd += ["--patch", *map(str, args.patch)]
    if args.labeled is not None:
        cmd += ["--labeled", str(args.labeled)]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    for item in args.set:
        cmd += ["--set", item]
    return [*cmd, "--job", *job]


def _parse_result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    raise RuntimeError("the worker printed no result")


def _run_jobs(args: argparse.Namespace, jobs: list[list[str]], log: list[str]) -> list[dict[str, Any]]:
    """Run worker jobs at the same time; each one's result, or an ``error`` entry."""
    procs = [
        subprocess.Popen(_worker_cmd(args, job), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for job in jobs
    ]
    results = []
    for job, proc in zip(jobs, procs):
        try:
            out, err = proc.communicate(timeout=args.job_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results.append({"job": job, "error": f"timed out after {args.job_timeout} s"})
            continue
        if proc.returncode != 0:
            tail = err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
            log.append(f"{' '.join(job)}: {err[-2000:]}")
            results.append({"job": job, "error": tail})
            continue
        try:
            results.append(_parse_result(out))
        except (RuntimeError, json.JSONDecodeError) as exc:
            results.append({"job": job, "error": str(exc)})
    return results


def _environment(device_name: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": device_name,
    }
    if torch.cuda.is_available() and device_name != "cpu":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def compile_verdict(fast: dict[str, Any], compiled: dict[str, Any], run_iterations: int) -> dict[str, Any]:
    """Whether compiling saves more over one run of ``run_iterations`` than compiling costs.

    The cost is the compiled first step's extra time over the eager first step.
    """
    saving = (fast["sec_per_it"] - compiled["sec_per_it"]) * run_iterations
    cost = compiled["first_step_s"] - fast["first_step_s"]
    return {"compile_pays_off": bool(saving > cost), "compile_saving_s_per_run": saving, "compile_cost_s": cost}


def side_by_side_verdict(
    alone: tuple[float, float], together: tuple[float, float], names: tuple[str, str], margin: float = 1.05
) -> dict[str, Any]:
    """Iterations per minute alone and side by side, from seconds per iteration.

    Two runs of equal length take ``a + b`` per iteration one after the other and
    about ``max(a2, b2)`` side by side (an upper bound: the faster run ends first
    and leaves the device to the other), so side by side wins when
    ``speedup_for_both = (a + b) / max(a2, b2)`` exceeds ``margin``.
    """
    (a, b), (a2, b2) = alone, together
    speedup = (a + b) / max(a2, b2)
    return {
        "its_per_min_alone": {names[0]: 60 / a, names[1]: 60 / b},
        "its_per_min_together": {names[0]: 60 / a2, names[1]: 60 / b2, "total": 60 / a2 + 60 / b2},
        "speedup_for_both": speedup,
        "run_side_by_side": bool(speedup > margin),
    }


def compile_d_verdict(compiled: dict[str, Any], eager_d: dict[str, Any]) -> dict[str, Any]:
    """Whether compiling the D step's eval-mode generator forward as well makes the step faster."""
    saving = eager_d["sec_per_it"] - compiled["sec_per_it"]
    return {"compile_d_forward_pays_off": bool(saving > 0), "compile_d_forward_saving_s_per_it": saving}


class Budget:
    """Start no measurement that would end after ``seconds``, judged by the training jobs so far.

    A training job's estimate is the longest one seen (0 before the first);
    ``weight`` scales it for measurements made of several such jobs.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.longest_train = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, weight: float) -> bool:
        return self.elapsed() + weight * self.longest_train <= self.seconds

    def record_train(self, seconds: float) -> None:
        self.longest_train = max(self.longest_train, seconds)


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of the module docstring, as one dict.

    Measurements run in order of importance; one that would end after
    ``--budget`` seconds (see :class:`Budget`) is skipped and listed under
    ``skipped``.
    """
    from canet.training.profiles import fast_workers

    budget = Budget(args.budget)
    log: list[str] = []
    skipped: list[str] = []
    result: dict[str, Any] = {"environment": _environment(args.device), "config": args.config,
                              "budget_s": args.budget}

    def run(what: str, jobs: list[list[str]], weight: float = 0.0) -> list[dict[str, Any]] | None:
        if not budget.allows(weight):
            skipped.append(what)
            return None
        t0 = time.perf_counter()
        out = _run_jobs(args, jobs, log)
        if jobs[0][0] == "train":
            budget.record_train((time.perf_counter() - t0) / max(weight, 1.0))
        return out

    train: dict[str, Any] = {}
    result["train"] = train

    def train_variant(variant: str) -> dict[str, Any]:
        res = run(f"train {variant}", [["train", args.config, variant]], weight=1.0)
        if res:
            train[variant] = res[0]
        return train.get(variant, {})

    exact = train_variant("exact")
    fast = train_variant("fast")
    if "sec_per_it" in exact and "sec_per_it" in fast:
        result["fast_speedup"] = exact["sec_per_it"] / fast["sec_per_it"]

    res = run("inference", [["inference", args.config]])
    if res:
        result["inference"] = res[0]

    if not args.no_side_by_side:
        side: dict[str, Any] = {}
        # Both measurements or neither: the verdict needs the pair alone and the two together.
        if budget.allows(2.5):
            pair = run(f"train {args.pair_config} alone", [["train", args.pair_config, "fast"]], weight=1.0)
            barrier = tempfile.mkdtemp(prefix="probe_barrier_")
            both = run(
                "side by side",
                [["train", args.config, "fast", barrier], ["train", args.pair_config, "fast", barrier]],
                weight=1.5,
            )
        else:
            skipped.append("side by side")
            pair = both = None
        if pair and both:
            side["alone"] = {args.config: fast, args.pair_config: pair[0]}
            side["together"] = {args.config: both[0], args.pair_config: both[1]}
            try:
                side.update(side_by_side_verdict(
                    (fast["sec_per_it"], pair[0]["sec_per_it"]),
                    (both[0]["sec_per_it"], both[1]["sec_per_it"]),
                    (args.config, args.pair_config),
                ))
            except KeyError:
                side["error"] = "a side-by-side measurement failed"
            result["side_by_side"] = side

    workers = sorted({2, args.workers if args.workers is not None else fast_workers()})
    result["loader"] = [r for w in workers for r in (run(f"loader {w}", [["loader", args.config, str(w)]]) or [])]
    if "sec_per_it" in fast and result["loader"]:
        best = max(r.get("batches_per_s", 0.0) for r in result["loader"])
        result["loader_keeps_up"] = bool(best > 1.0 / fast["sec_per_it"])

    contiguous = train_variant("fast-contiguous")
    if "sec_per_it" in contiguous and "sec_per_it" in fast:
        result["channels_last_speedup"] = contiguous["sec_per_it"] / fast["sec_per_it"]

    if not args.no_compile:
        compiled = train_variant("fast+compile")
        if "sec_per_it" in compiled and "sec_per_it" in fast:
            result.update(compile_verdict(fast, compiled, args.run_iterations))
        eager_d = train_variant("fast+compile+eager-d")
        if "sec_per_it" in compiled and "sec_per_it" in eager_d:
            result.update(compile_d_verdict(compiled, eager_d))

    result["seconds"] = budget.elapsed()
    result["skipped"] = skipped
    if log:
        result["worker_errors"] = log
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/LA", help="LA folder or datalist (default data/LA)")
    parser.add_argument("--config", default="la_canet_16", help="training config name or path")
    parser.add_argument("--pair-config", default="la_vnet_16", help="the second run of the side-by-side test")
    parser.add_argument("--device", default="auto", help="auto (default), cuda or cpu")
    parser.add_argument("--iterations", type=int, default=100, help="timed training iterations (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first (default 10)")
    parser.add_argument("--patch", nargs=3, type=int, metavar=("X", "Y", "Z"), help="patch (default: the config's)")
    parser.add_argument("--labeled", type=int, help="labeled cases (default: the config's)")
    parser.add_argument("--workers", type=int, help="loader workers (default: the fast profile's)")
    parser.add_argument("--loader-batches", type=int, default=50, help="timed loader batches (default 50)")
    parser.add_argument("--infer-cases", type=int, default=2, help="test volumes timed per mode (default 2)")
    parser.add_argument("--run-iterations", type=int, default=6000, help="iterations of a full run (default 6000)")
    parser.add_argument("--no-compile", action="store_true", help="skip the fast+compile variant")
    parser.add_argument("--no-side-by-side", action="store_true", help="skip the two-runs test")
    parser.add_argument("--probe-cases", type=int, default=24,
                        help="an LA folder is cut to its first N training cases on disk (default 24)")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="start no measurement that would end after this many seconds (default 150)")
    parser.add_argument("--max-timed-seconds", type=float, default=20.0,
                        help="a training variant's timed loop stops after this many seconds (default 20)")
    parser.add_argument("--job-timeout", type=float, default=170.0, help="seconds per worker job (default 170)")
    parser.add_argument("--pair-timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.iterations < 1 or args.warmup < 1:
        print("error: --iterations and --warmup must be >= 1", file=sys.stderr)
        return 2
    if args.max_timed_seconds <= 0:
        print(f"error: --max-timed-seconds must be > 0, got {args.max_timed_seconds}", file=sys.stderr)
        return 2
    from canet.errors import CanetError

    try:
        if args.job:
            kind, name, *rest = args.job
            if kind == "train":
                res = job_train(args, name, rest[0], rest[1] if len(rest) > 1 else None)
            elif kind == "loader":
                res = job_loader(args, name, int(rest[0]))
            else:
                res = job_inference(args, name)
            print(RESULT_TAG + json.dumps(res), flush=True)
            return 0
        if (Path(args.data) / "train.list").is_file():
            args.data = la_subset_root(
                Path(args.data), Path(tempfile.mkdtemp(prefix="probe_la_")), args.probe_cases, args.infer_cases
            )
        result = probe(args)
    except CanetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from canet.io import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
