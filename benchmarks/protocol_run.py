"""One run of the paper's protocol: train one config and seed, evaluate, write one result file.

``run``: trains ``CONFIG`` with ``SEED`` (the fast GPU settings unless ``--exact``;
an interrupted run in ``--runs`` resumes), evaluates the **last** checkpoint on
``test.list`` in ``reference`` mode with largest-connected-component
post-processing and in ``fast`` mode, and writes
``--results/<config>_seed<seed>.json`` (``--results`` defaults to
``benchmarks/results``): per-case and mean Dice, Jaccard, 95HD and ASD of both
modes, iterations, training seconds, seconds per iteration, the GPU, torch and
CUDA versions and the settings the run used (``wall_seconds_train``: the training
command's wall seconds over all invocations, a killed one counted up to the file's
last write before the kill). A run that fails still writes its
file, with ``"status": "failed"`` and the error, so that every run is reported.
A result file whose run folder is gone (a new machine) starts over from
iteration 0, its lost attempt recorded under ``lost_runs``, unless training had
finished and every evaluation of the last checkpoint was written: then the file
is marked done as it is, and with ``--kept`` the kept checkpoints it could not
evaluate are named under ``kept_checkpoints_lost``.
Result files are meant to be committed; checkpoints are not.

``next``: runs the next ``--count`` runs of :data:`ORDER` that have no finished
result file yet (one after the other, or side by side with ``--parallel``,
which ``benchmarks/gpu_probe.py`` says whether to use; side by side, each run
takes its share of the CPUs as loader workers).

``interim``: evaluates the newest checkpoint of a run that is still training
(or was stopped) on ``test.list`` (fast mode unless ``--mode`` names another
evaluation; repeated, as ``--mode fast --mode reference``, it evaluates the same
checkpoint each way, which consecutive calls would not: the run replaces its
``last.pt`` meanwhile) and keeps the metrics, the checkpoint's iteration and SHA-256 and the run's loss
means per 100 iterations in ``--results/<config>_seed<seed>_interim.json``,
under the run's attempt. Not the protocol's result (that is the last
checkpoint); it is how far a run had learned if its folder is later lost.

``export-weights`` / ``join-weights``: a run's generator as a checkpoint without
training state, large weight tensors in bf16, cut into parts of at most
``--part-mib`` MiB (the device machine returns files of at most 16 MiB), and put
back together (the parts' SHA-256 is checked).

Usage::

    python benchmarks/protocol_run.py run la_canet_16 --seed 1337 --data data/LA
    python benchmarks/protocol_run.py next --count 2 --parallel --data data/LA
    python benchmarks/protocol_run.py interim la_canet_16 --seed 1337 --data data/LA --runs-dir ~/canet-runs
    python benchmarks/protocol_run.py export-weights runs/paper_protocol/la_canet_16/seed1337 OUT_DIR
    python benchmarks/protocol_run.py join-weights OUT_DIR/la_canet_16_seed1337.pt.part* -o canet16.pt
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


# ``finished``: what result files said before runs reported ``running`` / ``done`` / ``failed``.
DONE = ("done", "finished")


def is_finished(path: Path) -> bool:
    """Whether ``path`` is a result file of a finished run."""
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status") in DONE
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


def median_sec_per_it(metrics_csv: Path) -> tuple[float | None, int]:
    """Median of the ``sec_per_it`` of a run's ``metrics.csv`` rows, and how many rows it covers.

    Each row's value is the wall time per iteration since the row before
    (validation and checkpoint writes included), so the mean of the rows, like
    the clock's ``sec_per_it``, grows with whatever shares the CPU for a while;
    the median is the speed of most windows, and a slow stretch of less than
    half the run leaves it alone. ``(None, 0)`` without rows that have a value.
    """
    values = []
    with open(metrics_csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("sec_per_it"):
                values.append(float(row["sec_per_it"]))
    return (statistics.median(values) if values else None), len(values)


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
    keep = ("mode", "decision", "lcc", "overlap", "weighting", "tta", "distance_unit", "spacing", "amp", "device")
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


def _child_dies_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGKILL the child when this process dies, so a killed run leaves no orphan trainer."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run(cmd: list[str], log: Path, poll: Callable[[], None] | None = None, poll_seconds: float = 15.0) -> float:
    """Run ``cmd``, appending its output to ``log``; its wall seconds. Raises on failure.

    ``poll`` is called every ``poll_seconds`` while the command runs (to update
    the result file from the run's ``progress.json``).
    """
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        pre = _child_dies_with_parent if sys.platform.startswith("linux") else None
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pre)  # noqa: PLW1509
        while True:
            try:
                code = proc.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                if poll is not None:
                    poll()
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{cmd[3] if len(cmd) > 3 else cmd[0]} failed (exit {code}): "
                           f"{tail[0] if tail else ''}")
    return time.perf_counter() - start


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultFile:
    """The result file of one run, rewritten atomically whenever it changes."""

    def __init__(self, path: Path, content: dict[str, Any]) -> None:
        self.path = path
        self.content = content

    def write(self) -> None:
        from canet.io import atomic_write_text

        self.content["updated"] = _now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.content, indent=2, sort_keys=False) + "\n")

    def update_progress(self, run_dir: Path) -> None:
        """Copy the run's ``progress.json`` (iteration, steady-state speed, sessions) in, if it changed."""
        from canet.training.progress import read_progress

        progress = read_progress(run_dir)
        if progress is None or progress == self.content.get("progress"):
            return
        self.content["progress"] = progress
        self.content["iteration"] = progress["iteration"]
        self.content["sec_per_it"] = progress["sec_per_it"]
        self.content["projected_hours"] = progress["projected_total_hours"]
        self.content["expected_end"] = progress["expected_end"]
        self.content["restarts"] = progress["restarts"]
        self.content["redone_iterations"] = progress["redone_iterations"]
        metrics = run_dir / "metrics.csv"
        median, rows = median_sec_per_it(metrics) if metrics.is_file() else (None, 0)
        self.content["sec_per_it_median"] = median
        self.content["sec_per_it_median_rows"] = rows
        total = progress.get("total")
        self.content["projected_hours_median"] = total * median / 3600 if median is not None and total else None
        self.write()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _evaluate(
    checkpoint: Path, folder: Path, mode: str, data: str, device: str, log: Path, extra: list[str]
) -> dict[str, Any]:
    """``canet evaluate`` of ``checkpoint`` on the test split into ``folder`` (a killed one resumes)."""
    # summary.json is written last, once every case is scored (the case journal stays beside it); one
    # that scored other weights under this path is not this evaluation
    summary = folder / "summary.json"
    done = False
    if summary.is_file():
        recorded = json.loads(summary.read_text(encoding="utf-8")).get("checkpoint_sha256")
        done = recorded is None or recorded == _sha256(checkpoint)
    cmd = canet_command("evaluate", str(checkpoint), "--data", data, "--split", "test", "--mode", mode,
                        "--device", device, "--out", str(folder), "--quiet", "--resume", *extra)
    wall = None if done else _run(cmd, log)
    entry = read_evaluation(folder)
    entry["command"] = shlex.join(cmd)
    entry["wall_seconds"] = wall
    return entry


# The evaluations of a run's last checkpoint, by name: (``canet evaluate --mode``, extra flags).
# reference: the paper's protocol with canet's decision (mean sigmoid > 0.5); authors_relu: the same
# windows with the authors' test rule (mean ReLU(logit) > 0.5); fast: canet's fast mode.
EVALUATIONS: dict[str, tuple[str, list[str]]] = {
    "reference": ("reference", []),
    "authors_relu": ("reference", ["--decision", "relu"]),
    "fast": ("fast", []),
}


def same_generator(a: Path, b: Path) -> bool:
    """Whether two canet checkpoints hold the same generator weights, tensor for tensor (and the same model)."""
    import torch

    from canet.checkpoint import load_checkpoint

    ca, cb = load_checkpoint(a), load_checkpoint(b)
    ga, gb = ca["generator"], cb["generator"]
    if ca.get("model") != cb.get("model") or ga.keys() != gb.keys():
        return False
    return all(torch.equal(ga[k], gb[k]) for k in ga)


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
    kept: bool = False,
    poll_seconds: float = 15.0,
) -> dict[str, Any]:
    """Train (or resume), evaluate and write the result file of one config and seed; returns its content.

    The result file exists from the start (``status: running``) and follows the
    run's ``progress.json`` while it trains; it ends ``done`` with the metrics or
    ``failed`` with the reason. A run whose result file is ``done`` is not run
    again. ``kept``: also evaluate the kept checkpoints (``iter_<N>.pt``) in
    reference mode (means and per-case values under ``kept_checkpoints``) and name
    the best of them (optimistic: picked on the test set).

    Raises:
        canet.training.progress.RunLockedError: another process is running this
            config and seed in ``runs`` (the result file is left alone).
        ProfileMismatchError: the run folder or the unfinished result file is of
            the other profile (see :func:`profile_conflict`; nothing is written).
    """
    from canet.device import cpu_info
    from canet.training.progress import RunLock

    run_dir = runs / config / f"seed{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = runs / config / f"seed{seed}.log"
    out = result_path(results, config, seed)
    lock = RunLock(runs / config / f".seed{seed}.lock", what=f"protocol run {config} seed {seed} in")
    lock.acquire()
    try:
        if is_finished(out):
            return json.loads(out.read_text(encoding="utf-8"))
        previous = {}
        if out.is_file():
            with contextlib.suppress(OSError, json.JSONDecodeError):
                previous = json.loads(out.read_text(encoding="utf-8"))
        conflict = profile_conflict(previous, run_dir, exact)
        if conflict is not None:
            raise ProfileMismatchError(f"{config} seed {seed}: {conflict}")
        if not _has_started(run_dir) and _evaluated_before_it_was_lost(previous):
            closed = _close_without_run_folder(previous, kept)
            ResultFile(out, closed).write()
            print(f"{config} seed {seed}: trained and evaluated before its run folder {run_dir} was lost; "
                  f"result file marked done" + ("; the kept checkpoints' evaluations are lost with it"
                                                 if "kept_checkpoints_lost" in closed else ""),
                  file=sys.stderr, flush=True)
            return closed
        previous = _forget_lost_run(previous, run_dir)
        result = ResultFile(out, {
            "config": config,
            "seed": seed,
            "profile": "exact" if exact else "fast",
            "status": "running",
            "started": previous.get("started") or _now(),
            "updated": None,
            "run_dir": str(run_dir),
            "log": str(log),
            "device": device,
            "cpu": cpu_info(),
            "invocations": int(previous.get("invocations") or 0) + 1,
        })
        for key in ("train_command", "wall_seconds_train", "lost_runs"):
            if key in previous:
                result.content[key] = previous[key]
        r = result.content
        result.update_progress(run_dir)
        result.write()
        try:
            _train_and_evaluate(result, config, seed, data, run_dir, log, device, exact,
                                train_args or [], eval_args or [], kept, poll_seconds)
            r["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - every failure is reported in the result file
            r["status"] = "failed"
            r["error"] = f"{type(exc).__name__}: {exc}"
        result.write()
        return r
    finally:
        lock.release()


class ProfileMismatchError(RuntimeError):
    """The requested profile (``--exact`` or the fast default) is not that of the run it would continue."""


def profile_conflict(previous: dict[str, Any], run_dir: Path, exact: bool) -> str | None:
    """Why this invocation must not go on with ``run_dir`` / the result file ``previous``, or None.

    A run folder is resumed with the profile it was started with, whatever the
    invocation asks, so asking for another one would label the result wrongly.
    A result file of an unfinished run in another profile (an exact CPU run, say,
    met by a fast GPU run in the same ``--results`` folder) would be replaced by a
    run that is not its continuation: the two belong in different folders.
    """
    import yaml

    wanted = "exact" if exact else "fast"
    config = run_dir / "config.yaml"
    if config.is_file():
        try:
            train = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("train") or {}
        except (OSError, yaml.YAMLError):
            return None  # canet train --resume reports an unreadable run folder itself
        started = train.get("profile", "exact")
        if started != wanted:
            flag = "add --exact" if started == "exact" else "leave out --exact"
            return (f"its run folder {run_dir} was started with the {started} profile, not the {wanted} one; "
                    f"{flag} to resume it, or give another --runs-dir")
        return None
    before = previous.get("profile")
    if before and before != wanted and previous.get("iteration") is not None and not _has_started(run_dir):
        cpu = previous.get("cpu")
        where = cpu.get("model") if isinstance(cpu, dict) else None
        return (f"its result file is of a run in the {before} profile ({previous.get('status')}, iteration "
                f"{previous.get('iteration')}{f' on {where}' if where else ''}), not a {wanted} one; "
                f"give another --results folder" + (" or add --exact" if before == "exact" else " or leave out --exact"))
    return None


def _has_started(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that ``canet train --resume`` can continue."""
    return (run_dir / "checkpoints" / "last.pt").is_file() or (run_dir / "config.yaml").is_file()


def fast_gap(evaluations: dict[str, Any]) -> dict[str, float]:
    """``{"fast_minus_reference_dice_points": ...}`` from the fast and reference evaluations; empty when
    either mean Dice is missing."""
    ref = ((evaluations.get("reference") or {}).get("mean") or {}).get("dice")
    fast = ((evaluations.get("fast") or {}).get("mean") or {}).get("dice")
    return {} if ref is None or fast is None else {"fast_minus_reference_dice_points": 100.0 * (fast - ref)}


def _evaluated_before_it_was_lost(previous: dict[str, Any]) -> bool:
    """Whether an unfinished result file already holds the protocol's result: training finished and
    every evaluation of :data:`EVALUATIONS` of the last checkpoint written (each is written only once
    it has scored every case)."""
    if not previous or previous.get("status") in DONE:
        return False
    evaluations = previous.get("evaluations") or {}
    return ((previous.get("progress") or {}).get("status") == "finished"
            and previous.get("checkpoint_sha256") is not None
            and all((evaluations.get(name) or {}).get("cases") for name in EVALUATIONS))


def _close_without_run_folder(previous: dict[str, Any], kept: bool) -> dict[str, Any]:
    """The result file of a run whose folder was lost after its last checkpoint had been evaluated.

    The protocol's result (the last checkpoint, every decision rule) is complete, so it is kept
    and marked ``done`` rather than trained again; training again from iteration 0 would only
    serve the kept checkpoints' comparison. With ``kept`` and that comparison not finished, what
    was lost is recorded under ``kept_checkpoints_lost`` (with the iterations already scored, if
    any), so that the missing table is visible in the result.
    """
    from canet.device import cpu_info

    now = _now()
    closed = {**previous, **fast_gap(previous["evaluations"]), "status": "done", "updated": now,
              "closed_without_run_folder": {
                  "when": now, "cpu": cpu_info()["model"],
                  "why": "its run folder was not found after training had finished and every evaluation of "
                         "the last checkpoint had been written"}}
    if kept and "best_kept_on_test" not in previous:
        closed["kept_checkpoints_lost"] = {
            "scored_before": sorted(previous.get("kept_checkpoints") or {}, key=int),
            "why": "the kept checkpoints were lost with the run folder before they were evaluated",
        }
    return closed


def _forget_lost_run(previous: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What of an earlier result file carries over to this invocation.

    A result file that is not ``done`` but whose run folder is gone (a new
    machine, a deleted ``--runs-dir``) describes training that no longer
    exists: its start time, invocations, commands and wall time must not be
    added to the run that starts again from iteration 0. Only a record of it
    is kept, under ``lost_runs`` (when it started, the iteration it reached,
    on which CPU and where), so that the restart is visible in the result.
    """
    if not previous or _has_started(run_dir):
        return previous
    if previous.get("iteration") is None:  # it never got to train: nothing was lost
        return previous
    cpu = previous.get("cpu")
    lost = {
        "started": previous.get("started"),
        "last_update": previous.get("updated"),
        "iteration_reached": previous.get("iteration"),
        "sec_per_it": previous.get("sec_per_it"),
        "sec_per_it_median": previous.get("sec_per_it_median"),
        "cpu": cpu.get("model") if isinstance(cpu, dict) else None,
        "run_dir": previous.get("run_dir"),
        "train_command": previous.get("train_command"),
        "why": "its run folder was not found; trained again from iteration 0",
    }
    return {"lost_runs": [*previous.get("lost_runs", []), lost]}


def disk_shortfall(run_dir: Path) -> str | None:
    """A one-line warning when ``run_dir``'s disk lacks room for the checkpoints still to come.

    A resumed run still writes one kept checkpoint per ``train.keep_every`` up to
    ``iterations``, and each ``last.pt`` is written beside the old one before
    the rename: (kept still to come + 1) x the size of ``last.pt``. None when
    there is room, or nothing to size from (no ``last.pt`` yet).
    """
    import yaml

    from canet.io import free_bytes
    from canet.training.progress import read_progress

    last = run_dir / "checkpoints" / "last.pt"
    config = run_dir / "config.yaml"
    progress = read_progress(run_dir) or {}
    if not last.is_file() or not config.is_file() or progress.get("iteration") is None:
        return None
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    total, keep = int(cfg["iterations"]), int(cfg["train"].get("keep_every") or 0)
    done = int(progress["iteration"])
    kept_to_come = total // keep - done // keep if keep > 0 else 0
    need = (kept_to_come + 1) * last.stat().st_size
    free = free_bytes(run_dir)
    if free is None or free >= need:
        return None
    gb = 1e9
    return (f"warning: {run_dir} needs about {need / gb:.1f} GB for {kept_to_come} kept checkpoint(s) and last.pt, "
            f"its disk has {free / gb:.1f} GB free; a full disk stops training (the same command resumes it)")


def _train_and_evaluate(
    result: ResultFile, config: str, seed: int, data: str, run_dir: Path, log: Path, device: str, exact: bool,
    train_args: list[str], eval_args: list[str], kept: bool, poll_seconds: float,
) -> None:
    import yaml

    from canet.training.progress import read_progress

    r = result.content
    progress = read_progress(run_dir)
    if progress is not None and progress.get("status") == "finished":
        r["train_command"] = r.get("train_command") or "(trained earlier)"
    else:
        if _has_started(run_dir):
            cmd = canet_command("train", "--resume", str(run_dir), "--device", device, "--quiet")
        else:
            cmd = canet_command("train", "--config", config, "--data", data, "--out", str(run_dir),
                                "--seed", str(seed), "--device", device, "--quiet", *train_args)
            if not exact:
                cmd.append("--fast")
            r["train_command"] = shlex.join(cmd)
        r["last_command"] = shlex.join(cmd)
        warning = disk_shortfall(run_dir)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)
            r["disk_warning"] = f"{_now()}: {warning}"
        # Earlier invocations' seconds plus this one's so far, kept current at every poll, so that an
        # invocation killed mid-run is counted up to the result file's last write, not dropped.
        before = float(r.get("wall_seconds_train") or 0.0)
        start = time.perf_counter()

        def poll() -> None:
            r["wall_seconds_train"] = before + (time.perf_counter() - start)
            result.update_progress(run_dir)

        wall = _run(cmd, log, poll=poll, poll_seconds=poll_seconds)
        r["wall_seconds_train"] = before + wall
    result.update_progress(run_dir)  # iteration, sec_per_it, ... as the finished run left them
    progress = r.get("progress") or {}
    r["iterations"] = progress.get("iteration")
    r["timed_steps"] = progress.get("timed_steps") or 0
    # The loop's seconds over every session (checkpoint writes included), from metrics.csv.
    r["train_seconds"] = train_seconds(run_dir / "metrics.csv")[0]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    tr = cfg["train"]
    r["settings"] = {
        "profile": tr.get("profile", "exact"), "amp": tr["amp"], "channels_last": tr["channels_last"],
        "compile": tr["compile"], "deterministic": tr["deterministic"],
        "d_step_reuse_outputs": tr.get("d_step_reuse_outputs"),
        "workers": cfg["data"]["num_workers"], "patch_size": cfg["data"]["patch_size"],
        "batch_size": cfg["data"]["batch_size"], "labeled_bs": cfg["data"]["labeled_bs"],
        "labeled": cfg["data"]["labeled"], "iterations": cfg["iterations"],
    }
    env = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
    r["environment"] = {k: env.get(k) for k in ("device", "device_name", "torch", "cuda", "cudnn",
                                                  "python", "git_commit", "git_dirty", "hostname", "cpu_threads")}
    last = run_dir / "checkpoints" / "last.pt"
    r["checkpoint_sha256"] = _sha256(last)
    result.write()

    evaluations = r.setdefault("evaluations", {})
    for name, (mode, extra) in EVALUATIONS.items():
        evaluations[name] = _evaluate(last, run_dir / f"eval_{name}", mode, data, device, log, [*extra, *eval_args])
        result.write()
    r.update(fast_gap(evaluations))
    result.write()
    if kept:
        table = r.setdefault("kept_checkpoints", {})
        for ckpt in sorted((run_dir / "checkpoints").glob("iter_*.pt"), key=lambda p: int(p.stem[5:])):
            if same_generator(ckpt, last):
                # The last iteration's kept copy: its reference evaluation is the one above.
                table[ckpt.stem[5:]] = {"mean": evaluations["reference"]["mean"], "same_as": "last.pt",
                                        "command": evaluations["reference"]["command"]}
            else:
                entry = _evaluate(ckpt, run_dir / f"eval_kept_{ckpt.stem}", "reference", data, device, log,
                                  eval_args)
                # Per case too, so the result file alone says how the last checkpoint differs case by case.
                table[ckpt.stem[5:]] = {"mean": entry["mean"], "cases": entry["cases"], "command": entry["command"]}
            result.write()
        scored = {k: v["mean"]["dice"] for k, v in table.items() if v["mean"]["dice"] is not None}
        if scored:
            best = max(scored, key=lambda k: scored[k])
            r["best_kept_on_test"] = {
                "iteration": int(best), "dice": scored[best],
                "note": "optimistic: chosen on the test cases it is scored on; for comparison only",
            }


# --------------------------------------------------------------------------- interim


INTERIM_NOTE = ("interim evaluations of a run that has not finished: checkpoints before the protocol's last "
                "iteration, not the protocol's result and not comparable with the paper's figures")
# Iterations per window of the loss means kept in the interim file.
INTERIM_LOSS_EVERY = 100


def interim_path(results: Path, config: str, seed: int) -> Path:
    """``results/<config>_seed<seed>_interim.json``."""
    return results / f"{config}_seed{seed}_interim.json"


def interim_evaluations(
    config: str,
    seed: int,
    data: str,
    runs: Path,
    results: Path,
    device: str = "auto",
    modes: Sequence[str] = ("fast",),
    eval_args: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the newest checkpoint of an unfinished run and keep the numbers in the interim file.

    The run may be training meanwhile: ``last.pt`` is copied first (the
    trainer replaces it by a rename, so the copy is one whole checkpoint) and
    the copy is evaluated on ``test.list`` in each of ``modes`` (names of
    :data:`EVALUATIONS`: fast, reference, authors_relu), one after the other on
    the same weights, then removed. Each entry (iteration, checkpoint SHA-256,
    per-case and mean metrics, command) and the run's loss means per
    :data:`INTERIM_LOSS_EVERY` iterations go into
    ``results/<config>_seed<seed>_interim.json`` under the run's attempt (its
    result file's start time) as soon as that evaluation ends, so that a run
    whose folder is lost with its machine still leaves how far it had learned.
    Returns the entries, in the order of ``modes``.

    Raises:
        FileNotFoundError: the run folder holds no checkpoint yet.
        ValueError: a mode is not a name of :data:`EVALUATIONS` (nothing is evaluated).
    """
    import os
    import shutil

    from canet.checkpoint import load_checkpoint

    unknown = [m for m in modes if m not in EVALUATIONS]
    if unknown:
        raise ValueError(f"unknown evaluation {unknown[0]!r}; expected one of {', '.join(EVALUATIONS)}")
    if not modes:
        raise ValueError(f"no evaluation named; expected one or more of {', '.join(EVALUATIONS)}")
    modes = list(dict.fromkeys(modes))  # each once, in the order given
    run_dir = runs / config / f"seed{seed}"
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint yet (checkpoints/last.pt not found)")
    snapshots = run_dir / "interim"
    snapshots.mkdir(exist_ok=True)
    copy = snapshots / ".last.pt.tmp"
    shutil.copyfile(last, copy)
    iteration = int(load_checkpoint(copy)["iteration"])
    snapshot = snapshots / f"iter_{iteration}.pt"
    os.replace(copy, snapshot)
    log = runs / config / f"seed{seed}.interim.log"
    entries = []
    try:
        sha256 = _sha256(snapshot)
        for mode in modes:
            evaluate_mode, extra = EVALUATIONS[mode]
            entry = _evaluate(snapshot, snapshots / f"eval_iter_{iteration}_{mode}", evaluate_mode, data, device,
                              log, [*extra, *(eval_args or [])])
            entry = {"iteration": iteration, "mode": mode, "checkpoint_sha256": sha256, "evaluated": _now(), **entry}
            _record_interim(config, seed, run_dir, results, entry)
            entries.append(entry)
    finally:
        snapshot.unlink()  # a copy of a checkpoint the run keeps (or has replaced): never left behind
    return entries


def _record_interim(config: str, seed: int, run_dir: Path, results: Path, entry: dict[str, Any]) -> None:
    """Put one interim ``entry`` (and the run's loss means) into the interim file, replacing its old one."""
    from canet.device import cpu_info

    run_result: dict[str, Any] = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        run_result = json.loads(result_path(results, config, seed).read_text(encoding="utf-8"))
    out = interim_path(results, config, seed)
    content: dict[str, Any] = {"config": config, "seed": seed, "note": INTERIM_NOTE, "attempts": {}}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        content = json.loads(out.read_text(encoding="utf-8"))
    attempt = content["attempts"].setdefault(str(run_result.get("started") or "unknown"), {})
    attempt["cpu"] = cpu_info()["model"]
    attempt["run_dir"] = str(run_dir)
    key = (entry["iteration"], entry["mode"])
    evaluations = [e for e in attempt.get("evaluations", []) if (e["iteration"], e["mode"]) != key]
    attempt["evaluations"] = sorted([*evaluations, entry], key=lambda e: (e["iteration"], e["mode"]))
    if (run_dir / "metrics.csv").is_file():
        from protocol_report import loss_windows, read_metrics

        rows = read_metrics(run_dir / "metrics.csv")
        attempt["losses"] = {"every": INTERIM_LOSS_EVERY, "windows": loss_windows(rows, INTERIM_LOSS_EVERY)}
    ResultFile(out, content).write()


# --------------------------------------------------------------------------- weights


def export_weights(run_dir: Path, out_dir: Path, part_mib: float = 15.0) -> list[Path]:
    """Write the run's last generator as a light checkpoint in parts of at most ``part_mib`` MiB.

    Returns the part files; ``<name>.sha256`` beside them holds the whole file's hash.
    """
    import torch

    from canet.checkpoint import load_checkpoint, save_checkpoint
    from canet.io import atomic_path, atomic_write_text

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
    size = max(1, int(part_mib * 2**20))
    parts = []
    for k in range(0, max(len(data), 1), size):
        part = out_dir / f"{name}.part{k // size:03d}"
        with atomic_path(part) as tmp:
            tmp.write_bytes(data[k : k + size])
        parts.append(part)
    atomic_write_text(out_dir / f"{name}.sha256", hashlib.sha256(data).hexdigest() + "\n")
    return parts


def join_weights(parts: list[Path], output: Path) -> Path:
    """Concatenate parts (sorted by name) into ``output``, checking the SHA-256 if it is beside them.

    Raises:
        CanetError: a file not named ``<name>.part<N>``, parts of two files, a part number
            missing (the file would be cut short), or a hash mismatch.
    """
    from canet.errors import CanetError
    from canet.io import atomic_path

    numbered = []
    for p in parts:
        stem, sep, number = p.name.rpartition(".part")
        if not sep or not (number.isascii() and number.isdigit()):
            raise CanetError(f"{p} is not an exported part (<name>.part<N>)")
        if any((s, n) == (stem, int(number)) for s, n, _ in numbered):
            raise CanetError(f"part {int(number):03d} of {stem} is given twice")
        numbered.append((stem, int(number), p))
    stems = sorted({stem for stem, _, _ in numbered})
    if len(stems) > 1:
        raise CanetError(f"the parts belong to {len(stems)} files ({', '.join(stems)}); join one at a time")
    numbered.sort(key=lambda t: t[1])
    missing = sorted(set(range(numbered[-1][1] + 1)) - {n for _, n, _ in numbered})
    if missing:
        raise CanetError(f"part {missing[0]:03d} of {stems[0]} is missing ({len(missing)} missing)")
    data = b"".join(p.read_bytes() for _, _, p in numbered)
    stem = stems[0]
    digest = numbered[0][2].parent / f"{stem}.sha256"
    if digest.is_file() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CanetError(f"the parts of {stem} do not match {digest} (a part is missing or damaged)")
    with atomic_path(output) as tmp:
        Path(tmp).write_bytes(data)
    return output


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from canet.cli.argtypes import nonnegative_int, positive_int

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="data/LA", help="LA folder (default data/LA)")
        p.add_argument("--runs-dir", "--runs", dest="runs", type=Path, default=Path("runs/paper_protocol"),
                       help="run folders (default runs/paper_protocol; a long run may live outside the repository)")
        p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="result files")
        p.add_argument("--device", default="auto")
        p.add_argument("--eval-args", default="", help="extra `canet evaluate` flags (one string)")

    def common(p: argparse.ArgumentParser) -> None:
        where(p)
        p.add_argument("--exact", action="store_true", help="the paper's exact fp32 settings, not --fast")
        p.add_argument("--train-args", default="", help="extra `canet train` flags (one string)")
        p.add_argument("--kept", action="store_true",
                       help="also evaluate the kept checkpoints iter_<N>.pt (reference mode; best one is optimistic)")

    p = sub.add_parser("run", help="one config and seed")
    p.add_argument("config")
    p.add_argument("--seed", type=nonnegative_int, default=1337)
    common(p)
    p = sub.add_parser("next", help="the next runs of the protocol's order without a result")
    p.add_argument("--count", type=positive_int, default=1)
    p.add_argument("--parallel", action="store_true", help="run them side by side on one device")
    common(p)
    p = sub.add_parser("interim", help="evaluate the newest checkpoint of an unfinished run (not its result)")
    p.add_argument("config")
    p.add_argument("--seed", type=nonnegative_int, default=1337)
    p.add_argument("--mode", choices=tuple(EVALUATIONS), action="append", dest="modes",
                   help="evaluation, as named in the result file: fast (default, about 7x quicker), reference "
                        "(the paper's protocol) or authors_relu (the same windows, the authors' decision rule); "
                        "repeat it to evaluate one checkpoint in several ways")
    where(p)
    p = sub.add_parser("export-weights", help="a run's generator in parts")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--part-mib", type=_part_mib, default=15.0)
    p = sub.add_parser("join-weights", help="put exported parts back together")
    p.add_argument("parts", nargs="+", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    return parser


def _summary_line(result: dict[str, Any]) -> str:
    if result["status"] not in DONE:
        return f"{result['config']} seed {result['seed']}: {result['status']}: {result.get('error')}"
    ref = result["evaluations"]["reference"]["mean"]["dice"]
    fast = result["evaluations"]["fast"]["mean"]["dice"]
    spi = result.get("sec_per_it")
    speed = "?" if spi is None else f"{spi:.4f}"
    return (f"{result['config']} seed {result['seed']}: {result['iterations']} it, "
            f"{speed} s/it, Dice reference {100 * (ref or 0):.2f} %, fast {100 * (fast or 0):.2f} %")


def _part_mib(text: str) -> float:
    """A part size in MiB: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MiB, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of MiB > 0, got {text!r}")
    return value


def _folders_usable(*folders: Path) -> str | None:
    """A line naming the first of ``folders`` that exists but is not a folder, else None."""
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder"
    return None


def main(argv: list[str] | None = None) -> int:
    from canet.errors import CanetError

    args = build_parser().parse_args(argv)
    if args.command in ("export-weights", "join-weights"):
        try:
            if args.command == "export-weights":
                for part in export_weights(args.run_dir, args.out_dir, args.part_mib):
                    print(part)
            else:
                print(join_weights(args.parts, args.output))
        except (CanetError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "interim":
        try:
            entries = interim_evaluations(args.config, args.seed, args.data, args.runs, args.results, args.device,
                                          args.modes or ["fast"], shlex.split(args.eval_args))
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for entry in entries:
            dice = entry["mean"]["dice"]
            print(f"{args.config} seed {args.seed}: iteration {entry['iteration']}, {entry['mode']} mode, "
                  f"Dice {'-' if dice is None else f'{100 * dice:.2f} %'} (interim, not the result)")
        return 0
    from canet.training.progress import RunLockedError

    try:
        train_args, eval_args = shlex.split(args.train_args), shlex.split(args.eval_args)
    except ValueError as exc:  # unbalanced quotes
        print(f"error: --train-args / --eval-args: {exc}", file=sys.stderr)
        return 2
    blocked = _folders_usable(args.runs, args.results)
    if blocked:
        print(f"error: {blocked}", file=sys.stderr)
        return 2
    kw = dict(data=args.data, runs=args.runs, results=args.results, device=args.device, exact=args.exact,
              train_args=train_args, eval_args=eval_args, kept=args.kept)
    if args.command == "run":
        try:
            result = run_one(args.config, args.seed, **kw)
        except (RunLockedError, ProfileMismatchError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(_summary_line(result))
        return 0 if result["status"] in DONE else 1
    todo = pending_runs(args.results)[: args.count]
    if not todo:
        print("every run of the protocol has a finished result")
        return 0
    if not args.parallel or len(todo) == 1:
        status = 0
        for config, seed in todo:
            try:
                result = run_one(config, seed, **kw)
            except (RunLockedError, ProfileMismatchError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 2
                continue
            print(_summary_line(result), flush=True)
            status |= result["status"] not in DONE
        return status
    base = [sys.executable, str(Path(__file__).resolve()), "run", "--data", args.data, "--runs-dir", str(args.runs),
            "--results", str(args.results), "--device", args.device, "--train-args", args.train_args,
            "--eval-args", args.eval_args, *(["--exact"] if args.exact else []),
            *(["--kept"] if args.kept else [])]
    return _run_side_by_side(base, todo)


def _run_side_by_side(base: list[str], todo: list[tuple[str, int]]) -> int:
    """Start one ``run`` per config and seed at once; 1 if any failed.

    Each run is told how many share the machine (:data:`canet.training.profiles.RUNS_ON_HOST_ENV`),
    so that the fast profile gives each its share of the CPUs as loader workers.
    """
    import os

    from canet.training.profiles import RUNS_ON_HOST_ENV

    env = {**os.environ, RUNS_ON_HOST_ENV: str(len(todo))}
    procs = [subprocess.Popen([*base[:3], config, "--seed", str(seed), *base[3:]], env=env) for config, seed in todo]
    return int(any(p.wait() != 0 for p in procs))


if __name__ == "__main__":
    sys.exit(main())
