"""One run of the paper's protocol: train one config and seed, evaluate, write one result file.

``run``: trains ``CONFIG`` with ``SEED`` (the fast GPU settings unless ``--exact``;
an interrupted run in ``--runs`` resumes), evaluates the **last** checkpoint on
``test.list`` in ``reference`` mode with largest-connected-component
post-processing and in ``fast`` mode, and writes
``--results/<config>_seed<seed>.json`` (``--results`` defaults to
``benchmarks/results``): per-case and mean Dice, Jaccard, 95HD and ASD of both
modes, iterations, training seconds, seconds per iteration, the GPU, torch and
CUDA versions and the settings the run used. A run that fails still writes its
file, with ``"status": "failed"`` and the error, so that every run is reported.
Result files are meant to be committed; checkpoints are not.

``next``: runs the next ``--count`` runs of :data:`ORDER` that have no finished
result file yet (one after the other, or side by side with ``--parallel``,
which ``benchmarks/gpu_probe.py`` says whether to use).

``export-weights`` / ``join-weights``: a run's generator as a checkpoint without
training state, large weight tensors in bf16, cut into parts of at most
``--part-mib`` MiB (the device machine returns files of at most 16 MiB), and put
back together (the parts' SHA-256 is checked).

Usage::

    python benchmarks/protocol_run.py run la_canet_16 --seed 1337 --data data/LA
    python benchmarks/protocol_run.py next --count 2 --parallel --data data/LA
    python benchmarks/protocol_run.py export-weights runs/paper_protocol/la_canet_16/seed1337 OUT_DIR
    python benchmarks/protocol_run.py join-weights OUT_DIR/la_canet_16_seed1337.pt.part* -o canet16.pt
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "benchmarks" / "results"
METRICS = ("dice", "jaccard", "hd95", "asd")
SEEDS = (1337, 1338, 1339)
CONFIG_ORDER = ("la_canet_16", "la_vnet_16", "la_canet_8", "la_vnet_8", "la_sassnet_16", "la_vnet_full")
# The order GPU windows take the runs in: every config with the first seed, then the next seed.
ORDER: tuple[tuple[str, int], ...] = tuple((c, s) for s in SEEDS for c in CONFIG_ORDER)
# Training state a light checkpoint leaves out.
TRAINING_STATE = ("optimizers", "discriminator", "teacher", "ranks", "scalers", "schedulers")
# Float tensors with at least this many elements are stored in bf16 by export-weights
# (conv and linear weights); BatchNorm statistics and biases stay fp32.
BF16_MIN_ELEMENTS = 4096


def canet_command(*args: str) -> list[str]:
    """The canet CLI started with this interpreter (nothing needs to be on PATH)."""
    return [sys.executable, "-m", "canet.cli.main", *args]


def result_path(results: Path, config: str, seed: int) -> Path:
    """``results/<config>_seed<seed>.json``."""
    return results / f"{config}_seed{seed}.json"


def is_finished(path: Path) -> bool:
    """Whether ``path`` is a result file of a finished run."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


def pending_runs(results: Path, order: tuple[tuple[str, int], ...] = ORDER) -> list[tuple[str, int]]:
    """The runs of ``order`` without a finished result file, in order."""
    return [(c, s) for c, s in order if not is_finished(result_path(results, c, s))]


def train_seconds(metrics_csv: Path) -> tuple[float, int]:
    """Training-loop seconds and iterations from a run's ``metrics.csv``.

    Each row's ``sec_per_it`` covers the iterations since the previous row.
    """
    total = 0.0
    last = 0
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            it = int(row["iteration"])
            if row.get("sec_per_it"):
                total += float(row["sec_per_it"]) * (it - last)
            last = it
    return total, last


def read_evaluation(folder: Path) -> dict[str, Any]:
    """Per-case values, means and settings of one ``canet evaluate`` folder."""
    from canet.comparison import load_evaluation

    ev = load_evaluation(folder)
    cases = {case: {m: _number(row.get(m)) for m in METRICS} for case, row in ev.rows.items()}
    summary = ev.summary
    means = {}
    for m in METRICS:
        entry = summary.get(m)
        means[m] = entry.get("mean") if isinstance(entry, dict) else None
    keep = ("mode", "lcc", "overlap", "weighting", "tta", "distance_unit", "spacing", "amp", "device")
    return {
        "mean": means,
        "cases": cases,
        "settings": {k: summary[k] for k in keep if k in summary},
        "seconds_per_volume": _mean_seconds(ev.rows),
    }


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # NaN -> None (JSON null)


def _mean_seconds(rows: dict[str, dict[str, str]]) -> float | None:
    values = [_number(r.get("seconds")) for r in rows.values()]
    finite = [v for v in values if v is not None]
    return sum(finite) / len(finite) if finite else None


def _run(cmd: list[str], log: Path) -> float:
    """Run ``cmd``, appending its output to ``log``; its wall seconds. Raises on failure."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{cmd[3] if len(cmd) > 3 else cmd[0]} failed (exit {proc.returncode}): "
                           f"{tail[0] if tail else ''}")
    return time.perf_counter() - start


def run_one(
    config: str,
    seed: int,
    data: str,
    runs: Path,
    results: Path,
    device: str = "auto",
    exact: bool = False,
    train_args: list[str] | None = None,
    eval_args: list[str] | None = None,
) -> dict[str, Any]:
    """Train, evaluate and write the result file of one config and seed; returns its content."""
    import yaml

    run_dir = runs / config / f"seed{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = runs / config / f"seed{seed}.log"
    out = result_path(results, config, seed)
    result: dict[str, Any] = {
        "config": config,
        "seed": seed,
        "profile": "exact" if exact else "fast",
        "status": "running",
        "run_dir": str(run_dir),
    }
    try:
        if (run_dir / "checkpoints" / "last.pt").is_file():
            cmd = canet_command("train", "--resume", str(run_dir), "--device", device, "--quiet")
        else:
            cmd = canet_command("train", "--config", config, "--data", data, "--out", str(run_dir),
                                "--seed", str(seed), "--device", device, "--quiet", *(train_args or []))
            if not exact:
                cmd.append("--fast")
        result["train_command"] = shlex.join(cmd)
        result["wall_seconds_train"] = _run(cmd, log)
        seconds, iterations = train_seconds(run_dir / "metrics.csv")
        result.update(iterations=iterations, train_seconds=seconds,
                      sec_per_it=seconds / iterations if iterations else None)
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        tr = cfg["train"]
        result["settings"] = {
            "profile": tr.get("profile", "exact"), "amp": tr["amp"], "channels_last": tr["channels_last"],
            "compile": tr["compile"], "deterministic": tr["deterministic"],
            "workers": cfg["data"]["num_workers"], "patch_size": cfg["data"]["patch_size"],
            "batch_size": cfg["data"]["batch_size"], "labeled_bs": cfg["data"]["labeled_bs"],
            "labeled": cfg["data"]["labeled"],
        }
        env = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
        result["environment"] = {k: env.get(k) for k in ("device", "device_name", "torch", "cuda", "cudnn",
                                                           "python", "git_commit", "git_dirty", "hostname")}
        result["evaluations"] = {}
        last = run_dir / "checkpoints" / "last.pt"
        for mode in ("reference", "fast"):
            folder = run_dir / f"eval_{mode}"
            cmd = canet_command("evaluate", str(last), "--data", data, "--split", "test", "--mode", mode,
                                "--device", device, "--out", str(folder), "--quiet", *(eval_args or []))
            wall = _run(cmd, log)
            entry = read_evaluation(folder)
            entry["command"] = shlex.join(cmd)
            entry["wall_seconds"] = wall
            result["evaluations"][mode] = entry
        ref = result["evaluations"]["reference"]["mean"]["dice"]
        fast = result["evaluations"]["fast"]["mean"]["dice"]
        if ref is not None and fast is not None:
            result["fast_minus_reference_dice_points"] = 100.0 * (fast - ref)
        result["status"] = "finished"
    except Exception as exc:  # noqa: BLE001 - every failure is reported in the result file
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["log"] = str(log)
    from canet.io import atomic_write_text

    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2, sort_keys=False) + "\n")
    return result


# --------------------------------------------------------------------------- weights


def export_weights(run_dir: Path, out_dir: Path, part_mib: float = 15.0) -> list[Path]:
    """Write the run's last generator as a light checkpoint in parts of at most ``part_mib`` MiB.

    Returns the part files; ``<name>.sha256`` beside them holds the whole file's hash.
    """
    import torch

    from canet.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    light = {k: v for k, v in payload.items() if k not in TRAINING_STATE}
    light["generator"] = {
        k: v.to(torch.bfloat16) if v.is_floating_point() and v.numel() >= BF16_MIN_ELEMENTS else v
        for k, v in payload["generator"].items()
    }
    light["exported_from"] = str(run_dir)
    name = f"{run_dir.parent.name}_{run_dir.name}.pt"
    out_dir.mkdir(parents=True, exist_ok=True)
    whole = out_dir / f".{name}.whole"
    save_checkpoint(light, whole)
    data = whole.read_bytes()
    whole.unlink()
    size = int(part_mib * 2**20)
    parts = []
    for k in range(0, max(len(data), 1), size):
        part = out_dir / f"{name}.part{k // size:03d}"
        part.write_bytes(data[k : k + size])
        parts.append(part)
    (out_dir / f"{name}.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    return parts


def join_weights(parts: list[Path], output: Path) -> Path:
    """Concatenate parts (sorted by name) into ``output``, checking the SHA-256 if it is beside them.

    Raises:
        SystemExit: a hash mismatch.
    """
    from canet.io import atomic_path

    ordered = sorted(parts, key=lambda p: int(p.name.rsplit(".part", 1)[1]))
    data = b"".join(p.read_bytes() for p in ordered)
    stem = ordered[0].name.rsplit(".part", 1)[0]
    digest = ordered[0].parent / f"{stem}.sha256"
    if digest.is_file() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise SystemExit(f"error: the parts of {stem} do not match {digest} (a part is missing or damaged)")
    with atomic_path(output) as tmp:
        Path(tmp).write_bytes(data)
    return output


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="data/LA", help="LA folder (default data/LA)")
        p.add_argument("--runs", type=Path, default=Path("runs/paper_protocol"), help="run folders")
        p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="result files")
        p.add_argument("--device", default="auto")
        p.add_argument("--exact", action="store_true", help="the paper's exact fp32 settings, not --fast")
        p.add_argument("--train-args", default="", help="extra `canet train` flags (one string)")
        p.add_argument("--eval-args", default="", help="extra `canet evaluate` flags (one string)")

    p = sub.add_parser("run", help="one config and seed")
    p.add_argument("config")
    p.add_argument("--seed", type=int, default=1337)
    common(p)
    p = sub.add_parser("next", help="the next runs of the protocol's order without a result")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--parallel", action="store_true", help="run them side by side on one device")
    common(p)
    p = sub.add_parser("export-weights", help="a run's generator in parts")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--part-mib", type=float, default=15.0)
    p = sub.add_parser("join-weights", help="put exported parts back together")
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    return parser


def _summary_line(result: dict[str, Any]) -> str:
    if result["status"] != "finished":
        return f"{result['config']} seed {result['seed']}: {result['status']}: {result.get('error')}"
    ref = result["evaluations"]["reference"]["mean"]["dice"]
    fast = result["evaluations"]["fast"]["mean"]["dice"]
    return (f"{result['config']} seed {result['seed']}: {result['iterations']} it, "
            f"{result['sec_per_it']:.4f} s/it, Dice reference {100 * (ref or 0):.2f} %, fast {100 * (fast or 0):.2f} %")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "export-weights":
        for part in export_weights(args.run_dir, args.out_dir, args.part_mib):
            print(part)
        return 0
    if args.command == "join-weights":
        print(join_weights(args.parts, args.output))
        return 0
    kw = dict(data=args.data, runs=args.runs, results=args.results, device=args.device, exact=args.exact,
              train_args=shlex.split(args.train_args), eval_args=shlex.split(args.eval_args))
    if args.command == "run":
        result = run_one(args.config, args.seed, **kw)
        print(_summary_line(result))
        return 0 if result["status"] == "finished" else 1
    todo = pending_runs(args.results)[: args.count]
    if not todo:
        print("every run of the protocol has a finished result")
        return 0
    if not args.parallel or len(todo) == 1:
        status = 0
        for config, seed in todo:
            result = run_one(config, seed, **kw)
            print(_summary_line(result), flush=True)
            status |= result["status"] != "finished"
        return status
    base = [sys.executable, str(Path(__file__).resolve()), "run", "--data", args.data, "--runs", str(args.runs),
            "--results", str(args.results), "--device", args.device, "--train-args", args.train_args,
            "--eval-args", args.eval_args, *(["--exact"] if args.exact else [])]
    procs = [subprocess.Popen([*base[:3], config, "--seed", str(seed), *base[3:]]) for config, seed in todo]
    return int(any(p.wait() != 0 for p in procs))


if __name__ == "__main__":
    sys.exit(main())
