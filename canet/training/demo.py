"""``canet demo``: CA-Net trained semi-supervised on a synthetic dataset, on the CPU, in minutes.

The demo writes a synthetic left-atrium-like dataset in the LA layout (20
training cases, 4 held out; :func:`canet.data.write_synthetic_dataset`) unless
it is already there, trains CA-Net (Trans-V + DAM, SDF and adversarial losses)
with 4 labeled and 16 unlabeled cases at a 64 x 64 x 48 patch, evaluates the
last checkpoint on the held-out cases with sliding windows and prints the
metric table next to the untrained network's Dice.

Its settings are the packaged config ``demo`` (``canet/configs/demo.yaml``,
:data:`DEMO_CONFIG_NAME`): the paper's recipe scaled down (a narrower network,
fewer iterations, a patch of 64 x 64 x 48) so that it finishes in a few minutes
on two CPU cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from canet.configs import packaged_config
from canet.errors import DataError
from canet.training.config import Config, load_config

#: The packaged config the demo trains with (``canet/configs/demo.yaml``).
DEMO_CONFIG_NAME = "demo"

#: Synthetic dataset of the demo: 20 training cases (4 labeled) and 4 test cases.
DEMO_DATA: dict[str, Any] = {"n_train": 20, "n_test": 4, "seed": 0, "shape": (96, 96, 64)}


def demo_config(
    data_root: str | os.PathLike[str] | None = None,
    iterations: int | None = None,
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> Config:
    """The demo's :class:`Config` (the packaged ``demo.yaml``) with the data folder,
    iterations and device filled in.

    ``overrides`` maps dotted keys to values (e.g. ``{"data.patch_size": [32, 32, 32]}``
    for tests).
    """
    changes: dict[str, Any] = {"train.device": device}
    if data_root is not None:
        changes["data.root"] = str(Path(data_root).resolve())
    if iterations is not None:
        changes["iterations"] = iterations
    changes.update(overrides or {})
    # the packaged file itself: a file called 'demo' in the working folder is not the demo's config
    return load_config(packaged_config(DEMO_CONFIG_NAME), changes)


def quick_iterations(iterations: int) -> int:
    """``--quick``: a fifth of ``iterations``, at least 10, never more than ``iterations``."""
    return min(iterations, max(10, iterations // 5))


def ensure_synthetic_data(folder: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write the synthetic dataset into ``folder`` unless a ``train.list`` is already there."""
    from canet.data import write_synthetic_dataset

    root = Path(folder)
    if (root / "train.list").is_file() and (root / "test.list").is_file():
        return root
    args = {**DEMO_DATA, **kwargs}
    return write_synthetic_dataset(root, **args)


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    iterations: int | None = None,
    quick: bool = False,
    device: str = "cpu",
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo; returns what it printed as numbers.

    Args:
        out: demo folder: ``data/`` (the synthetic set, reused) and ``run_<time>/``.
        iterations: training iterations (default ``demo.yaml``'s).
        quick: a fifth of the iterations (at least 10, at most all of them), for a smoke test.
        device: ``cpu``, ``cuda`` or ``auto``.
        quiet: log lines instead of a progress bar.
        overrides: dotted config keys (e.g. a smaller patch for tests).
        data_kwargs: arguments of :func:`canet.data.write_synthetic_dataset`
            (e.g. a smaller ``shape`` for tests).
        log: where the summary lines go.

    Returns:
        ``{"run_dir", "report", "dice", "untrained_dice", "summary", "seconds"}``.
    """
    from canet.data import load_case
    from canet.device import resolve_device
    from canet.evaluation import evaluate_model
    from canet.models import load_model
    from canet.report import write_report
    from canet.training.trainer import Trainer

    folder = Path(out)
    checked = demo_config(folder / "data", iterations, device, overrides)  # bad settings refused before data
    resolve_device(checked.train.device)  # and a device this machine lacks (is written)
    data_root = ensure_synthetic_data(folder / "data", **(data_kwargs or {}))
    cfg = demo_config(data_root, iterations, device, overrides)
    if quick:
        cfg = demo_config(data_root, quick_iterations(cfg.iterations), device, overrides)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = folder / f"run_{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = folder / f"run_{stamp}_{n}"

    trainer = Trainer(cfg, run_dir, quiet=quiet, log=log)
    trainer.setup()
    test_cases = trainer.spec.test
    if not test_cases:
        raise DataError(f"the demo dataset {data_root} has no test cases")
    volumes = [load_case(c, with_label=True) for c in test_cases]
    patch = cfg.data.patch_size
    eval_device = str(trainer.device)
    untrained = evaluate_model(
        trainer.generator, volumes, patch, num_classes=trainer.num_classes, spacing="voxels", device=eval_device
    )
    log(
        f"training CA-Net on {len(trainer.spec.labeled)} labeled + {len(trainer.spec.unlabeled)} "
        f"unlabeled synthetic cases for {cfg.iterations} iterations on {trainer.device} "
        f"(patch {'x'.join(map(str, patch))})"
    )
    start = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - start

    model = load_model(result.last_checkpoint, map_location=eval_device)
    summary = evaluate_model(
        model,
        volumes,
        patch,
        out_dir=run_dir / "eval",
        num_classes=trainer.num_classes,
        spacing="voxels",
        report=True,
        device=eval_device,
        extra_summary={"checkpoint": str(result.last_checkpoint), "split": "test", "data": str(data_root)},
    )
    report = write_report(run_dir)
    dice = summary["dice"]["mean"]
    before = untrained["dice"]["mean"]
    log("")
    log(f"held-out synthetic cases ({len(volumes)}), last checkpoint, distances in voxels:")
    log(summary["table"])
    log(f"Dice after training: {_fmt(dice)}  (untrained network: {_fmt(before)})")
    log(f"trained {result.iteration} iterations in {seconds:.0f} s")
    log(f"run folder: {run_dir}")
    log(f"report: {report}")
    return {
        "run_dir": run_dir,
        "report": report,
        "dice": dice,
        "untrained_dice": before,
        "summary": summary,
        "seconds": seconds,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
