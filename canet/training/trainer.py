"""The training loop shared by every method: one :class:`Trainer`, methods as strategies.

One iteration (0-based index ``i``; the run's "iteration" count is ``i + 1`` once
it is done):

1. the generator's learning rate is set to ``lr * gamma ** #{milestones <= i}``;
2. **generator step**: generator in train mode, discriminator (if any) in eval
   mode with its parameters frozen; the method's loss on the generator's output
   for the whole batch; the loss is checked for finiteness; SGD step;
3. **discriminator step** (methods with a discriminator): generator in eval mode
   re-predicts the batch without gradients (compiled with the rest under
   ``train.compile``; or, with
   ``train.d_step_reuse_outputs``, the generator step's detached outputs are
   reused), the discriminator in train mode classifies (sdf, image) with labeled
   rows -> 1 and unlabeled rows -> 0, cross-entropy; Adam step;
4. the method's ``after_step`` (the EMA teacher update);
5. logging (``metrics.csv``, TensorBoard, progress bar or log lines), validation
   and checkpoints on their schedules.

A checkpoint holds everything the next iteration depends on (networks,
optimizers, gradient scalers, the loader position and every RNG state), so a
run killed at any moment and resumed from ``checkpoints/last.pt`` continues
with exactly the iterations an uninterrupted run takes (bit-identical on CPU).

What is not the loop lives beside it: the run folder's ``config.yaml`` and
``environment.json`` in :mod:`canet.training.run_files`; ``metrics.csv``,
TensorBoard and the progress bar in :mod:`canet.training.run_log`; the
checkpoint's training state (networks, optimizers, scalers, loader positions,
RNG states) and its restoring in :mod:`canet.training.state`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from canet.checkpoint import load_checkpoint, save_checkpoint
from canet.device import resolve_device, select_device
from canet.errors import CanetError, ConfigError, DataError, first_names
from canet.inferers.settings import InferenceSettings
from canet.io import make_folder
from canet.losses import SDMTargets
from canet.models import SegOutput
from canet.training.config import Config, apply_overrides, config_from_dict, resolve
from canet.training.distributed import (
    all_true,
    barrier,
    batch_plan,
    broadcast_object,
    cleanup_distributed,
    gather_objects,
    init_distributed,
    rank_device,
)
from canet.training.methods import Method, StepContext, build_method, unused_keys_warning
from canet.training.profiles import apply_profile, defers_sync, training_flags
from canet.training.progress import (
    LOCK_FILE,
    Heartbeat,
    RunClock,
    RunLock,
    WallTimer,
    remove_stale_temporaries,
    write_progress,
)
from canet.training.run_files import CONFIG_FILE, load_run_config, write_run_files
from canet.training.run_log import RunLog, to_float
from canet.training.state import (
    TrainingState,
    checkpoint_device_type,
    rank_state,
    reseed_value,
    restore_rank_state,
)

__all__ = [
    "CREATED_BY",
    "Hook",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "load_run_config",
    "resolve_device",
    "resume",
    "selection_warning",
    "step_lr",
    "train",
]

CREATED_BY = "canet.training.Trainer"


def selection_warning(cfg: Config) -> str | None:
    """The warning a run prints at its start when ``best_val.pt`` is picked on the test split.

    Selecting on ``validation.split: test`` is allowed (to reproduce published
    numbers) but never silent: ``best_val.pt`` records ``selected_on: "test"`` and
    ``canet evaluate`` marks its test scores. None for any other set-up.
    """
    v = cfg.validation
    if not v.every or v.split != "test":
        return None
    return (
        "warning: validation.split is 'test': best_val.pt is selected on the test cases, so its "
        "test scores are optimistic (canet evaluate marks them); select on a validation split, "
        "or report last.pt"
    )


class TrainingError(CanetError):
    """Training cannot go on (e.g. a non-finite loss); the message says why and where."""


def step_lr(iteration: int, base_lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Learning rate of the 0-based step ``iteration``: ``base_lr * gamma ** #{m <= iteration}``.

    With milestones ``(2500, 3800)`` steps 0..2499 use ``base_lr``, 2500..3799
    ``0.1 * base_lr`` and later ones ``0.01 * base_lr``, as the original code.
    """
    passed = sum(1 for m in milestones if iteration >= m)
    return float(base_lr * gamma**passed)


# --------------------------------------------------------------------------- hooks


class Hook:
    """Callbacks of the loop; subclass and override what you need.

    ``logs`` maps the method's scalar names (and ``lr``) to their values. On
    logged iterations (``logged=True``) they are floats, the row written to
    ``metrics.csv`` (with ``sec_per_it``); on the others they are the step's
    0-dim tensors, not yet read from the device, so a hook that needs values
    on every iteration pays a sync (``float(v)``).
    """

    def on_start(self, trainer: Trainer) -> None:
        """Before the first iteration (after set-up or resume)."""

    def on_step_start(self, trainer: Trainer, iteration: int) -> None:
        """Before the step with 0-based index ``iteration``."""

    def on_step_end(self, trainer: Trainer, iteration: int, logs: dict[str, Any], logged: bool) -> None:
        """After step ``iteration`` (now ``iteration + 1`` steps are done)."""

    def on_validation(self, trainer: Trainer, iteration: int, dice: float) -> None:
        """After validating at ``iteration`` completed steps."""

    def on_checkpoint(self, trainer: Trainer, iteration: int, path: Path) -> None:
        """After writing a checkpoint at ``iteration`` completed steps."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last iteration (not called when training fails)."""


# --------------------------------------------------------------------------- result


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    iteration: int
    last_checkpoint: Path
    best_val_dice: float | None = None
    best_checkpoint: Path | None = None
    logs: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Train one run; see the module docstring for the loop.

    Args:
        cfg: the training config (resolved here with the method's defaults).
        run_dir: the run folder (created; ``None``: ``runs/<method>_<time>``).
        quiet: no progress bar, a log line every ``train.log_every`` iterations.
        hooks: extra :class:`Hook` objects.
        resume: continue the run in ``run_dir`` from ``checkpoints/last.pt``
            (from the start when it has no checkpoint yet).
        log: where log lines go (default ``print``).

    Use :meth:`setup` (also called by :meth:`run`) to build everything without
    training, e.g. to evaluate the untrained generator.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | os.PathLike[str] | None = None,
        quiet: bool = False,
        hooks: Sequence[Hook] = (),
        resume: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if cfg.data.root is not None and not Path(cfg.data.root).is_absolute():
            data = cfg.to_dict()
            data["data"]["root"] = _abs(cfg.data.root)
            cfg = config_from_dict(data)
        self.cfg = resolve(cfg)
        self.run_dir_arg = run_dir
        self.quiet = quiet
        self.hooks = list(hooks)
        self.resume = resume
        self._log = log or (lambda msg: print(msg, flush=True))
        self._ready = False
        self.iteration = 0
        self.iteration_saved: int | None = None  # iteration of the last last.pt written or resumed from
        self.best_val: float | None = None
        self.last_logs: dict[str, float] = {}
        self._run_log: RunLog | None = None
        self._lock: RunLock | None = None
        self.clock = RunClock()

    # ------------------------------------------------------------------ set-up

    def setup(self) -> None:
        """Process group, device, seeds, data, networks, optimizers; restore a checkpoint.

        A set-up that fails (a bad dataset, a checkpoint of another method, ...)
        lets go of the run folder's lock, so the same process may use the folder again;
        a new run's folder that set-up made and left empty is removed.
        """
        if self._ready:
            return
        given = None if self.run_dir_arg is None else Path(self.run_dir_arg)
        fresh = not self.resume and (given is None or not given.exists())
        had_lock = given is not None and (given / LOCK_FILE).exists()
        try:
            self._setup()
        except BaseException:
            if self._lock is not None:
                # A refused start leaves nothing behind: not the lock file it made (removed while still
                # held, so no other trainer can be holding it), nor a folder it made.
                if not had_lock and not self.resume:
                    with contextlib.suppress(OSError):
                        (self.run_dir / LOCK_FILE).unlink()
                self._lock.release()
                self._lock = None
                if fresh:
                    _remove_if_empty(self.run_dir)
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        want = resolve_device(cfg.train.device)
        self.dist = init_distributed(want.type == "cuda")
        self.device = want = rank_device(want, self.dist)
        # A process on cuda:N makes GPU N its current device, so that nothing (the
        # loader's pinned-memory thread) opens a context on GPU 0.
        select_device(self.device)
        self.cfg = cfg = apply_profile(cfg, self.device)
        # Each process's rows (data.global_batch divides the config's among the processes).
        self.batch = batch_plan(cfg.data, self.dist.world_size)
        self._defer_sync = defers_sync(cfg)
        self._first_bad: dict[str, Tensor] = {}
        if not self.resume:
            self._check_amp(cfg)  # a resumed run checks once it knows where its checkpoint was written
        self.is_main = self.dist.is_main

        run_dir = self.run_dir_arg
        if run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = Path("runs") / f"{cfg.method}_{stamp}"
        self.run_dir = Path(broadcast_object(str(run_dir), self.dist))
        self.ckpt_dir = self.run_dir / "checkpoints"
        last = self.ckpt_dir / "last.pt"
        payload = None
        if self.is_main:
            # One trainer per run folder; the kernel drops the lock when this process dies.
            self._lock = RunLock(self.run_dir / LOCK_FILE).acquire()
            for folder in (self.run_dir, self.ckpt_dir):
                remove_stale_temporaries(folder)
        if self.resume and last.is_file():
            payload = load_checkpoint(last)
        elif not self.resume and self.is_main and (last.is_file() or (self.run_dir / CONFIG_FILE).is_file()):
            raise ConfigError(
                f"run folder {self.run_dir} already holds a run; resume it with --resume {self.run_dir} "
                "or choose another --out"
            )
        elif not self.resume and self.is_main and any(
            (self.run_dir / name).is_file() for name in ("summary.json", "metrics.csv", "cases.jsonl")
        ):  # an evaluation's folder: training's metrics.csv (its loss log) would replace the evaluation's
            raise ConfigError(
                f"{self.run_dir} holds the results of an evaluation (metrics.csv, summary.json); "
                "choose another --out for the run"
            )
        barrier(self.dist)

        self._notes: list[str] = []
        if payload is not None:
            self.cfg = cfg = self._moved_device(cfg, checkpoint_device_type(payload))
        self._check_amp(cfg)  # a failed set-up lets go of the lock (setup)

        # Every switch the profile depends on, set on every device (none is inherited).
        self.flags = training_flags(cfg, self.device)
        self.flags.apply()

        # Data.
        if cfg.data.root is None:
            raise ConfigError("data.root is not set: pass --data ROOT_OR_DATALIST or set data.root in the config")
        from canet.data import build_train_loader, open_dataset

        self.spec = open_dataset(cfg.data.root, labeled=cfg.data.labeled)
        if cfg.data.check:
            self._check_data()
        from canet.data.preprocessing import describe_training_data

        self.preprocessing = describe_training_data(self.spec)
        num_classes = cfg.data.num_classes or int(self.spec.num_classes)
        if cfg.data.num_classes is not None and cfg.data.num_classes != self.spec.num_classes:
            raise ConfigError(
                f"data.num_classes is {cfg.data.num_classes} but the dataset has {self.spec.num_classes} classes"
            )
        self.num_classes = num_classes
        if cfg.validation.every > 0 and not self.spec.split(cfg.validation.split):
            raise ConfigError(
                f"validation.every is {cfg.validation.every} but the dataset has no "
                f"{cfg.validation.split!r} cases (set validation.every: 0)"
            )
        if cfg.validation.every > 0:  # found now, not at the first validation with the work since the last checkpoint
            used = self.spec.split(cfg.validation.split)[: cfg.validation.max_cases]
            bare = [c.case_id for c in used if c.label is None]
            if bare:
                shown = first_names(repr(c) for c in bare)
                raise ConfigError(
                    f"validation.every is {cfg.validation.every} but {len(bare)} of the {len(used)} "
                    f"{cfg.validation.split!r} cases it scores {'has' if len(bare) == 1 else 'have'} no label "
                    f"({shown}); validation needs ground "
                    "truth (give them labels, or set validation.every: 0)"
                )
        self.method: Method = build_method(cfg, num_classes)
        if self.method.needs_unlabeled and not self.spec.unlabeled:
            raise ConfigError(
                f"method {cfg.method!r} needs unlabeled cases but the dataset has none "
                f"(data.labeled is {cfg.data.labeled})"
            )
        self.loader = build_train_loader(
            self.spec,
            cfg.data.patch_size,
            self.batch.batch_size,
            self.batch.labeled_bs,
            seed=cfg.seed,
            num_workers=cfg.data.num_workers,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            extra_targets=SDMTargets(num_classes) if self.method.needs_sdm else None,
            pin_memory=self.device.type == "cuda",
        )

        # Networks: the same seed on every rank gives the same initial weights.
        torch.manual_seed(cfg.seed)
        self.generator = self.method.build_generator()
        self.discriminator = self.method.build_discriminator()
        self.teacher = self.method.build_teacher(self.generator)
        head_sdf = getattr(self.generator, "head_sdf", None)
        if head_sdf is not None and not self.method.uses_sdf_head:
            # No loss reads this head: it gets no gradient (as before) and DDP
            # skips it instead of searching the graph for unused parameters.
            head_sdf.requires_grad_(False)
        if cfg.train.sync_bn and self.dist.distributed:
            if self.device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA devices (SyncBatchNorm does not run on the CPU)")
            self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
        fmt = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
        for net in (self.generator, self.discriminator, self.teacher):
            if net is not None:
                net.to(self.device, memory_format=fmt)

        o = cfg.optimizer
        self.opt_g = torch.optim.SGD(
            self.generator.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        )
        self.opt_d = None
        if self.discriminator is not None:
            d = cfg.discriminator
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=d.lr, betas=tuple(d.betas))
        fp16 = cfg.train.amp == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.noise_gen = torch.Generator(device=self.device)
        self.noise_gen.manual_seed(cfg.seed * 1000 + 17 + self.dist.rank)
        # Dropout draws from the global generator: distinct per rank, fixed by the seed.
        torch.manual_seed(cfg.seed + 100_003 * (self.dist.rank + 1))
        if self.device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed + 100_003 * (self.dist.rank + 1))

        if payload is not None:
            self._restore(payload)

        # Wrappers for the training forward/backward, and for the D step's
        # eval-mode generator forward (``g_eval``, never DDP-wrapped: no gradient).
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module | None = self.discriminator
        self.g_eval: nn.Module = self.generator
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.generator, device_ids=ids, find_unused_parameters=False)
            if self.discriminator is not None:
                self.d_train = DDP(self.discriminator, device_ids=ids)
        if cfg.train.compile:
            self.g_train = torch.compile(self.g_train)  # type: ignore[assignment]
            if self.d_train is not None:
                self.d_train = torch.compile(self.d_train)  # type: ignore[assignment]
                if not cfg.train.d_step_reuse_outputs:
                    self.g_eval = torch.compile(self.generator)  # type: ignore[assignment]
        self._ready = True

    def split_line(self) -> str:
        """What the run trains on, e.g. ``data: 16 labeled + 64 unlabeled training cases; validation
        (validation): 0 cases, unused``."""
        v = self.cfg.validation
        val = self.spec.split(v.split)
        used = len(val) if v.max_cases is None else min(len(val), v.max_cases)
        count = f"{used} cases" if used == len(val) else f"{used} of {len(val)} cases (max_cases)"
        when = f"every {v.every} iterations" if v.every else "unused"
        unlabeled = "" if self.method.needs_unlabeled else f" (unused by {self.cfg.method})"
        return (f"data: {len(self.spec.labeled)} labeled + {len(self.spec.unlabeled)} unlabeled{unlabeled} training "
                f"cases; validation ({v.split}): {count}, {when}")

    def _check_data(self) -> None:
        """The dataset check of ``canet check-data``, on rank 0; every rank stops on a problem."""
        from canet.data.check import check_before_training

        message = None
        if self.is_main:
            try:
                report = check_before_training(self.cfg.data.root, self.cfg.data.labeled, log=self._log)  # type: ignore[arg-type]
            except DataError as exc:
                message = str(exc)
            else:
                smallest = report.summary.get("training_shape_min")
                patch = list(self.cfg.data.patch_size)
                if smallest is not None and any(s < p for s, p in zip(smallest, patch)):
                    self._log(
                        f"warning: data.patch_size {patch} is larger than some training volumes along an axis "
                        f"(smallest extent per axis {list(smallest)}); those are zero-padded to the patch, so "
                        "part of every such patch is padding"
                    )
                elif smallest is not None and min(smallest[:2]) < max(patch[:2]):
                    # the augmentation's rot90 in the x-y plane swaps x and y before the crop
                    self._log(
                        f"warning: data.patch_size {patch} fits the training volumes as stored (smallest extent "
                        f"per axis {list(smallest)}) but not once the augmentation's 90-degree rotation swaps "
                        f"x and y; about half of the patches of those volumes are then partly zero padding "
                        f"(x and y sides of at most {min(smallest[:2])} avoid it)"
                    )
        message = broadcast_object(message, self.dist)
        if message is not None:
            raise DataError(message)

    def _state(self) -> TrainingState:
        """The networks, optimizers and scalers that a checkpoint saves (this trainer's own objects)."""
        return TrainingState(
            self.generator, self.discriminator, self.teacher, self.opt_g, self.opt_d, self.scaler_g, self.scaler_d
        )

    def _check_amp(self, cfg: Config) -> None:
        if cfg.train.amp != "none" and self.device.type != "cuda":
            raise ConfigError(f"train.amp {cfg.train.amp!r} needs a CUDA device, got {self.device}")

    def _moved_device(self, cfg: Config, saved: str) -> Config:
        """``cfg`` for a checkpoint written on device type ``saved`` (noted for the start of the run).

        On the same device type nothing changes. After a move between the CPU
        and a GPU the run goes on, but no longer repeats an uninterrupted run bit
        for bit: the arithmetic differs and the device's random generators are
        seeded anew (:func:`canet.training.state.set_rng_state`). A fast-profile
        run trained with bf16 autocast on a GPU goes on in fp32 on the CPU, the
        fast profile's setting there.

        Raises:
            ConfigError: an autocast that the new device cannot run and that the
                profile did not choose (one line, saying where to resume).
        """
        here = self.device.type
        if saved == here:
            return cfg
        note = (
            f"warning: this run's checkpoint was written on {saved} and it now resumes on {here}: the device's "
            "random streams start anew and its arithmetic differs, so the run no longer repeats an "
            "uninterrupted one bit for bit"
        )
        amp = cfg.train.amp
        if here != "cuda" and amp != "none":
            if cfg.train.profile != "fast" or amp != "bf16":
                raise ConfigError(
                    f"this run trains with train.amp {amp!r}, which needs a CUDA device; it was written on "
                    f"{saved}: resume it on a CUDA device (--device cuda)"
                )
            data = cfg.to_dict()
            data["train"]["amp"] = "none"
            cfg = config_from_dict(data)
            note += "; it trained with bf16 autocast and goes on in fp32 (the fast profile's CPU setting)"
        self._notes.append(note)
        return cfg

    def _restore(self, payload: dict[str, Any]) -> None:
        ranks = self._state().restore(payload, self.cfg.method, self.dist.world_size)
        reseed = reseed_value(self.cfg.seed, self.dist.rank, int(payload["iteration"]))
        restore_rank_state(ranks[self.dist.rank], self.loader, self.device, self.noise_gen, reseed)
        self._notes.extend(self.loader.notes)
        self.iteration = int(payload["iteration"])
        self.iteration_saved = self.iteration
        self.best_val = payload.get("best_val_dice")
        self.clock = RunClock.from_dict(payload.get("clock"))

    # ------------------------------------------------------------------ checkpoints

    def _payload(self) -> dict[str, Any] | None:
        """The checkpoint dict on rank 0 (gathers every rank's loader and RNG state); None elsewhere."""
        local = rank_state(self.loader, self.device, self.noise_gen, self.dist.distributed)
        ranks = gather_objects(local, self.dist)
        if not self.is_main:
            return None
        o = self.cfg.optimizer
        return self._state().checkpoint(
            self.cfg,
            CREATED_BY,
            iteration=self.iteration,
            lr=step_lr(self.iteration, o.lr, o.milestones, o.gamma),
            ranks=ranks,
            best_val=self.best_val,
            world_size=self.dist.world_size,
            preprocessing=self.preprocessing,
            clock=self.clock.to_dict(),
        )

    def _save(self, payload: dict[str, Any], path: Path) -> None:
        save_checkpoint(payload, path)
        self.iteration_saved = self.iteration  # at once on rank 0; the other ranks after the save's barrier
        self._write_progress("running")
        for hook in self.hooks:
            hook.on_checkpoint(self, self.iteration, path)

    def _write_progress(self, status: str, **extra: Any) -> None:
        """``progress.json`` (rank 0): iteration, steady-state speed, sessions (and ``extra`` keys)."""
        if self.is_main:
            write_progress(self.run_dir, {**self.clock.report(self.iteration, self.cfg.iterations, status), **extra})

    def _time_checkpoint_due(self, it: int) -> bool:
        """Whether ``train.checkpoint_minutes`` have passed since the last checkpoint.

        One process decides: under DDP rank 0's answer is broadcast, and only on
        logged iterations (a host synchronisation), so the ranks always agree.
        """
        if not self.dist.distributed:
            return self._ckpt_timer.due()
        if it % self.cfg.train.log_every:
            return False
        return bool(broadcast_object(self._ckpt_timer.due(), self.dist))

    # ------------------------------------------------------------------ one iteration

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        amp = self.cfg.train.amp
        if amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _check_finite(self, value: Tensor, name: str, i: int) -> None:
        """Stop on a non-finite ``value`` at 0-based step ``i``.

        With a deferred check (the fast profile) this only records, on the
        device and without a synchronisation, the first step whose ``value`` was
        not finite; :meth:`_flush_finite` reads it.
        """
        if self._defer_sync:
            bad = ~torch.isfinite(value.detach()).all()
            never = torch.iinfo(torch.int64).max
            at = torch.where(bad, i, never)
            seen = self._first_bad.get(name)
            self._first_bad[name] = at if seen is None else torch.minimum(seen, at)
            return
        ok = bool(torch.isfinite(value.detach()).all().item())
        if all_true(ok, self.dist, self.device):
            return
        bad_value = "on another rank" if ok else f"= {float(value.detach().float().item())}"
        self._stop_non_finite(name, f"({bad_value}) at iteration {i + 1}")

    def _flush_finite(self) -> None:
        """Read the deferred finiteness checks (a host synchronisation); stop on a failure."""
        if not self._defer_sync:
            return
        never = torch.iinfo(torch.int64).max
        for name, first in self._first_bad.items():
            step = int(first.item())
            if all_true(step == never, self.dist, self.device):
                continue
            where = f"first at iteration {step + 1}" if step != never else "on another rank"
            self._stop_non_finite(name, f"({where}; found at the check after iteration {self.iteration})")

    def _stop_non_finite(self, name: str, detail: str) -> None:
        last = self.ckpt_dir / "last.pt"
        where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        raise TrainingError(f"non-finite {name} {detail}; training stopped, {where}")

    def train_step(self, batch: dict[str, Any], i: int) -> dict[str, Any]:
        """One iteration with 0-based index ``i``; returns the logged scalars (tensors or floats)."""
        cfg = self.cfg
        device = self.device
        fmt = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
        image = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
        # Labels travel as uint8 and are widened here, on the device; SDMs are the labeled rows'.
        label = batch["label"].to(device, non_blocking=True).long()
        sdm = batch.get("sdm")
        if sdm is not None:
            sdm = sdm.to(device, non_blocking=True).float()
        lbs = self.batch.labeled_bs
        lr = step_lr(i, cfg.optimizer.lr, cfg.optimizer.milestones, cfg.optimizer.gamma)
        for group in self.opt_g.param_groups:
            group["lr"] = lr

        # Generator step: D in eval mode (no dropout), its weights frozen.
        self.generator.train()
        d = self.discriminator
        if d is not None:
            d.eval()
            d.requires_grad_(False)
        with self._autocast():
            raw = self.g_train(image)
        output = SegOutput(seg=raw.seg.float(), sdf=raw.sdf.float())
        ctx = StepContext(
            iteration=i,
            image=image,
            label=label,
            sdm=sdm,
            labeled_bs=lbs,
            output=output,
            discriminator=d,
            teacher=self.teacher,
            generator=self.noise_gen,
            autocast=self._autocast,
        )
        with self._autocast():
            loss = self.method.generator_loss(ctx)
        if d is not None:
            d.requires_grad_(True)
        self._check_finite(loss, "loss", i)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()

        # Discriminator step.
        if d is not None and self.opt_d is not None and self.d_train is not None:
            d.train()
            with torch.no_grad():
                if cfg.train.d_step_reuse_outputs:
                    sdf = output.sdf.detach()
                else:
                    self.generator.eval()
                    with self._autocast():
                        sdf = self.g_eval(image).sdf.float()
                    self.generator.train()
            with self._autocast():
                loss_d = self.method.discriminator_loss(self.d_train, sdf, image, lbs)
            self._check_finite(loss_d, "discriminator loss", i)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(loss_d).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            ctx.logs["loss_d"] = loss_d.detach()

        self.method.after_step(ctx, self.generator)
        ctx.logs["lr"] = lr
        return ctx.logs

    # ------------------------------------------------------------------ validation

    def validation_settings(self) -> InferenceSettings:
        """How validation predicts: ``validation.mode``, ``overlap`` and ``lcc``
        (None: the dataset's default) on the training device, the other
        settings at their defaults (fp32, Gaussian weighting, no TTA)."""
        v = self.cfg.validation
        return InferenceSettings(
            mode=v.mode,
            overlap=v.overlap,
            lcc=self.spec.lcc if v.lcc is None else v.lcc,
            device=str(self.device),
        )

    def validate(self) -> float:
        """Mean Dice of the generator on the validation split (sliding windows), rank 0 only."""
        from canet.data import load_case
        from canet.evaluation import evaluate_model

        v = self.cfg.validation
        if not hasattr(self, "_val_volumes"):
            cases = self.spec.split(v.split)
            if v.max_cases is not None:
                cases = cases[: v.max_cases]
            self._val_volumes = [load_case(c, with_label=True) for c in cases]
        summary = evaluate_model(
            self.generator,
            self._val_volumes,
            self.cfg.data.patch_size,
            out_dir=None,
            num_classes=self.num_classes,
            settings=self.validation_settings(),
            spacing="voxels",
        )
        mean = summary["dice"]["mean"]
        return float("nan") if mean is None else float(mean)

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        """Train to ``cfg.iterations``; returns the :class:`TrainResult`.

        Raises:
            TrainingError: a non-finite loss (the last good checkpoint is kept).
        """
        self.setup()
        try:
            result = self._run()
            # every rank finished before any takes the process group down: a peer that closes its
            # connections while the other still uses them can abort that process at exit
            barrier(self.dist)
            return result
        finally:
            self.loader.close()
            cleanup_distributed(self.dist)
            if self._lock is not None:
                self._lock.release()

    def _run(self) -> TrainResult:
        cfg = self.cfg
        total = cfg.iterations
        if self.iteration > total:
            raise ConfigError(
                f"the run is at iteration {self.iteration}; --iterations must be >= that, got {total}"
            )
        self._run_log = None
        if self.is_main:
            make_folder(self.ckpt_dir)
            write_run_files(
                self.run_dir, cfg, self.device, self.dist, self.iteration,
                extra={"batch": self.batch.to_dict(), "backend_flags": self.flags.to_dict()},
            )
            self._run_log = RunLog(
                self.run_dir, self.method.log_keys, self.iteration, total, cfg.method,
                quiet=self.quiet, resume=self.resume, log=self._log,
            )
            session = self.clock.start_session(self.iteration, Heartbeat.read(self.run_dir))
            if self.iteration:
                redone = f" ({session.redone} iterations after the last checkpoint are done again)" if session.redone else ""
                self._say(f"resumed {self.run_dir} at iteration {self.iteration}{redone}")
            self._write_progress("running")
            if not self.quiet:  # with a progress bar; --quiet output stays as it was
                self._say(self.split_line())
            if self.dist.distributed:
                self._say(self.batch.describe())
            for warning in (*self._notes, self.batch.warning(cfg.data.batch_size), selection_warning(cfg),
                            unused_keys_warning(cfg)):
                if warning is not None:
                    self._say(warning)
        barrier(self.dist)
        for hook in self.hooks:
            hook.on_start(self)

        start_time = time.perf_counter()
        start_iter = self.iteration
        window_t = time.perf_counter()
        window_n = 0
        log_every = cfg.train.log_every
        last_path = self.ckpt_dir / "last.pt"
        self._ckpt_timer = WallTimer(cfg.train.checkpoint_minutes)
        heartbeat = Heartbeat(self.run_dir) if self.is_main else None
        try:
            while self.iteration < total:
                i = self.iteration
                for hook in self.hooks:
                    hook.on_step_start(self, i)
                step_t = time.perf_counter()
                batch = next(self.loader)
                logs = self.train_step(batch, i)
                self.clock.add_step(time.perf_counter() - step_t)
                self.iteration = i + 1
                it = self.iteration
                if heartbeat is not None:
                    heartbeat.beat(it)
                window_n += 1
                if self._run_log is not None:
                    self._run_log.step()

                val_due = bool(cfg.validation.every) and (it % cfg.validation.every == 0 or it == total)
                ckpt_due = it % cfg.train.checkpoint_every == 0 or it == total or self._time_checkpoint_due(it)
                keep = bool(cfg.train.keep_every) and it % cfg.train.keep_every == 0
                if it % log_every == 0 or val_due or ckpt_due or keep:
                    self._flush_finite()

                val_dice = None
                if val_due:
                    if self.is_main:
                        val_dice = self.validate()
                        for hook in self.hooks:
                            hook.on_validation(self, it, val_dice)
                    barrier(self.dist)

                logged = it % log_every == 0 or it == total or val_dice is not None
                if logged:
                    values = {k: to_float(v) for k, v in logs.items()}
                    now = time.perf_counter()
                    values["sec_per_it"] = (now - window_t) / max(window_n, 1)
                    window_t, window_n = now, 0
                    self.last_logs = values
                    if self._run_log is not None:
                        self._run_log.row(it, values, val_dice, start_time, start_iter)
                for hook in self.hooks:
                    hook.on_step_end(self, i, values if logged else logs, logged)

                improved = False
                if val_dice is not None and math.isfinite(val_dice):
                    if self.best_val is None or val_dice > self.best_val:
                        self.best_val = val_dice
                        improved = True
                if ckpt_due or keep or improved:
                    payload = self._payload()
                    if payload is not None:
                        # last.pt goes last: a kill before it is written makes the resumed run
                        # redo this iteration and write the kept and best checkpoints again.
                        if keep:
                            save_checkpoint(payload, self.ckpt_dir / f"iter_{it}.pt")
                        if improved:
                            best = {**payload, "selected_on": cfg.validation.split}
                            save_checkpoint(best, self.ckpt_dir / "best_val.pt")
                            self._say(f"iteration {it}: validation Dice {val_dice:.4f} (best so far)")
                        self._save(payload, last_path)
                    barrier(self.dist)
                    self.iteration_saved = self.iteration  # every rank: rank 0 wrote last.pt
                    self._ckpt_timer.reset()
        except KeyboardInterrupt:
            # Ctrl-C: say where the run can go on from (what a kill would leave, said in words)
            saved = self.iteration_saved
            self._write_progress("interrupted", checkpoint_iteration=saved)  # where a resume goes on from
            where = (f"its last checkpoint (iteration {saved}) is kept; canet train --resume {self.run_dir} "
                     "goes on from it" if saved is not None else "no checkpoint was written yet")
            raise KeyboardInterrupt(f"training stopped at iteration {self.iteration}; {where}") from None
        finally:
            if heartbeat is not None:
                heartbeat.close()
            if self._run_log is not None:
                self._run_log.close()

        self._write_progress("finished")
        for hook in self.hooks:
            hook.on_end(self)
        best = self.ckpt_dir / "best_val.pt"
        return TrainResult(
            run_dir=self.run_dir,
            iteration=self.iteration,
            last_checkpoint=last_path,
            best_val_dice=self.best_val,
            best_checkpoint=best if best.is_file() else None,
            logs=dict(self.last_logs),
            seconds=time.perf_counter() - start_time,
        )

    def _say(self, message: str) -> None:
        if self._run_log is not None:
            self._run_log.say(message)
        else:
            self._log(message)


# --------------------------------------------------------------------------- entry points


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (and an empty ``checkpoints`` in it) when nothing else is there.

    Only ``rmdir``: a folder that anything has been written into since is kept.
    """
    with contextlib.suppress(OSError):
        if (folder / "checkpoints").is_dir():
            (folder / "checkpoints").rmdir()
        folder.rmdir()


def train(
    cfg: Config,
    run_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train a new run with ``cfg`` into ``run_dir`` (see :class:`Trainer`)."""
    return Trainer(cfg, run_dir, quiet=quiet, hooks=hooks).run()


def _abs(path: str) -> str:
    return str(Path(os.path.expanduser(path)).resolve())


def resume(
    run_dir: str | os.PathLike[str],
    iterations: int | None = None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Continue the run in ``run_dir`` from ``checkpoints/last.pt``.

    Args:
        run_dir: a folder written by :func:`train`.
        iterations: new total (extends a finished run); ``None`` keeps the saved one.
        overrides: dotted config keys that may change on resume (``data.root``,
            ``train.device``, ``data.num_workers``, ``train.log_every``,
            ``train.checkpoint_every``, ``train.checkpoint_minutes``, ``train.keep_every``,
            ``data.check``).
        quiet, hooks: as for :func:`train`.
    """
    cfg = load_run_config(run_dir)
    data = cfg.to_dict()
    changes = dict(overrides or {})
    if iterations is not None:
        changes["iterations"] = iterations
    allowed = {
        "iterations", "data.root", "train.device", "data.num_workers", "train.log_every",
        "train.checkpoint_every", "train.checkpoint_minutes", "train.keep_every", "data.check",
    }
    for key, value in changes.items():
        if key not in allowed:
            apply_overrides({}, {key: value})  # a key the config does not have is named as unknown
            raise ConfigError(
                f"config key {key!r} cannot change when resuming a run (these can: {', '.join(sorted(allowed))})"
            )
        if key == "data.root" and value is not None:
            value = _abs(str(value))
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    cfg = config_from_dict(data)
    return Trainer(cfg, run_dir, quiet=quiet, hooks=hooks, resume=True).run()
