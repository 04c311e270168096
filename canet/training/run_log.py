"""What the main process reports while it trains: ``metrics.csv``, TensorBoard, progress.

:class:`MetricsCSV` keeps one row per logged iteration; :class:`RunLog` writes
each logged row to it, to TensorBoard (``train/<name>``, ``val/dice``) and to
the progress bar, or, without a bar (``quiet``), to a log line with the rate
and the time left.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from canet.io import atomic_open, writing_to

METRICS_FILE = "metrics.csv"

# Progress-bar names of the losses.
SHORT_NAMES = {
    "loss": "loss",
    "loss_dice": "L_dice",
    "loss_sdf": "L_sdf",
    "loss_adv": "L_adv",
    "loss_cons": "L_cons",
    "loss_d": "L_D",
}


def to_float(value: Any) -> float:
    """A logged scalar (a tensor or a number) as a Python float (a sync for a CUDA tensor)."""
    if isinstance(value, Tensor):
        return float(value.detach().float().item())
    return float(value)


def hms(seconds: float) -> str:
    """``H:MM:SS`` (``?`` for a non-finite value)."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class MetricsCSV:
    """``metrics.csv``: one row per logged iteration (``iteration, <losses>, lr, val_dice, sec_per_it``)."""

    def __init__(self, path: Path, columns: Sequence[str], start: int) -> None:
        self.path = path
        self.columns = ["iteration", *columns, "lr", "val_dice", "sec_per_it"]
        self._keep_until(start)
        new = not path.is_file() or path.stat().st_size == 0
        self._fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        if new:
            try:
                with writing_to(path):
                    self._writer.writeheader()
                    self._fh.flush()
            except BaseException:
                # Nobody else holds the handle; closing flushes the unwritten header again, which may fail too.
                with contextlib.suppress(OSError):
                    self._fh.close()
                raise

    def _keep_until(self, start: int) -> None:
        """Drop rows past ``start`` (left by a run killed after its last checkpoint)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        kept = []
        for row in rows:
            try:
                it = int(row.get("iteration") or "")
            except ValueError:
                continue
            if it <= start and None not in row.values():
                kept.append(row)
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        out = {}
        for key in self.columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value) and key == "val_dice"):
                out[key] = ""
            elif isinstance(value, float):
                out[key] = f"{value:.6g}"
            else:
                out[key] = value
        with writing_to(self.path):
            self._writer.writerow(out)
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class RunLog:
    """The main process's reports of one training session.

    Args:
        run_dir: the run folder (``metrics.csv`` and the TensorBoard events go there).
        columns: the method's logged scalar names, in column order.
        start: the iteration the session starts at (rows after it are dropped).
        total: the run's last iteration.
        name: the progress bar's label (the method).
        quiet: no progress bar; a log line per logged row instead.
        resume: a resumed session (TensorBoard events after ``start`` are purged).
        log: where messages and log lines go.
    """

    def __init__(
        self,
        run_dir: Path,
        columns: Sequence[str],
        start: int,
        total: int,
        name: str,
        quiet: bool,
        resume: bool,
        log: Callable[[str], None],
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.total = total
        self._log = log
        self.csv = MetricsCSV(run_dir / METRICS_FILE, columns, start)
        self.writer: Any = SummaryWriter(log_dir=str(run_dir), purge_step=start + 1 if resume else None)
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, desc=name)

    def say(self, message: str) -> None:
        """A message above the progress bar, or a log line."""
        if self.bar is not None:
            self.bar.write(message)
        else:
            self._log(message)

    def step(self) -> None:
        """One more iteration done (moves the progress bar)."""
        if self.bar is not None:
            self.bar.update(1)

    def row(
        self, it: int, values: dict[str, float], val_dice: float | None, start_time: float, start_iter: int
    ) -> None:
        """Report the logged iteration ``it``: ``values`` (losses, ``lr``, ``sec_per_it``) and ``val_dice``."""
        row = {"iteration": it, **values, "val_dice": val_dice}
        self.csv.write(row)
        for key, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"train/{key}", value, it)
        if val_dice is not None and math.isfinite(val_dice):
            self.writer.add_scalar("val/dice", val_dice, it)
        shown = {k: values[k] for k in ("loss", "loss_dice", "loss_sdf", "loss_adv", "loss_cons", "loss_d") if k in values}
        if self.bar is not None:
            post = {SHORT_NAMES[k]: f"{v:.4f}" for k, v in shown.items()}
            post["lr"] = f"{values['lr']:.1e}"
            if val_dice is not None:
                post["val"] = f"{val_dice:.4f}"
            self.bar.set_postfix(post, refresh=False)
        else:
            elapsed = time.perf_counter() - start_time
            done = it - start_iter
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - it) / rate if rate > 0 else float("nan")
            parts = [f"iter {it}/{self.total}"]
            parts += [f"{k} {v:.4f}" for k, v in shown.items()]
            parts.append(f"lr {values['lr']:.2e}")
            if val_dice is not None:
                parts.append(f"val_dice {val_dice:.4f}")
            parts.append(f"{rate:.2f} it/s")
            parts.append(f"ETA {hms(eta)}")
            self._log("  ".join(parts))

    def close(self) -> None:
        """Close the bar, ``metrics.csv`` and the TensorBoard writer."""
        if self.bar is not None:
            self.bar.close()
        self.csv.close()
        self.writer.close()
