"""A training checkpoint's contents beyond the generator, and putting them back.

A run resumed from ``checkpoints/last.pt`` must take exactly the iterations an
uninterrupted run takes. So besides the generator (see
:func:`canet.checkpoint.make_checkpoint`) a training checkpoint holds:

- the discriminator and EMA teacher, the optimizers and gradient scalers
  (:class:`TrainingState`);
- per DDP rank, the loader position and every RNG state the loop draws from
  (:func:`rank_state`): torch's global generator (dropout), the methods' noise
  generator and, on CUDA, the device generator, with the device type they were
  drawn on (a run resumed on another device type reseeds the device
  generators, see :func:`set_rng_state`);
- the iteration, best validation Dice, the learning-rate schedule, the
  training data's description and the validation split (arguments of
  :meth:`TrainingState.checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from canet.checkpoint import make_checkpoint, model_spec
from canet.errors import CheckpointError
from canet.training.config import Config


def rng_state(device: torch.device, noise_gen: torch.Generator) -> dict[str, Any]:
    """The RNG states the loop draws from: ``{"torch", "noise"[, "cuda"], "device"}``.

    ``device`` is the device type the states were drawn on (``"cpu"``,
    ``"cuda"``): a CUDA generator's state does not fit a CPU generator, nor the
    other way round. Checkpoints written before it was recorded are read as
    ``"cuda"`` where they hold a ``"cuda"`` state, else ``"cpu"``.
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "noise": noise_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    state["device"] = device.type
    return state


def saved_device_type(state: dict[str, Any]) -> str:
    """The device type an :func:`rng_state` was drawn on (see there for older checkpoints)."""
    recorded = state.get("device")
    if isinstance(recorded, str):
        return recorded
    return "cuda" if state.get("cuda") is not None else "cpu"


def checkpoint_device_type(payload: dict[str, Any]) -> str:
    """The device type a training checkpoint was written on (that of its first rank's RNG states)."""
    ranks = payload.get("ranks") or [{}]
    return saved_device_type(ranks[0].get("rng") or {})


def reseed_value(seed: int, rank: int, iteration: int) -> int:
    """A seed for the device generators of a run resumed on another device type.

    Derived from ``(seed, rank, iteration)`` only, so the same resume draws
    the same numbers twice, and the ranks and the resumed iterations differ.
    """
    return int(np.random.SeedSequence([seed, rank, iteration, 17]).generate_state(1, dtype=np.uint64)[0] >> 1)


def set_rng_state(
    state: dict[str, Any], device: torch.device, noise_gen: torch.Generator, reseed: int | None = None
) -> bool:
    """Put back what :func:`rng_state` saved; whether every state could be put back.

    torch's global (CPU) generator is always restored. The noise generator
    and the CUDA generator live on the training device, so their states come
    back only when the checkpoint was written on the same device type; after
    a move between the CPU and a GPU they are seeded with ``reseed`` instead
    (required then) and False is returned.
    """
    torch.set_rng_state(state["torch"])
    if saved_device_type(state) == device.type:
        noise_gen.set_state(state["noise"])
        if device.type == "cuda" and state.get("cuda") is not None:
            torch.cuda.set_rng_state(state["cuda"], device)
        return True
    if reseed is None:
        raise CheckpointError(
            f"the checkpoint's random states were drawn on {saved_device_type(state)}, this run is on "
            f"{device.type}; they need a new seed"
        )
    noise_gen.manual_seed(reseed)
    if device.type == "cuda":
        torch.cuda.manual_seed(reseed)
    return False


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside ``torch.compile`` and DDP wrappers."""
    module = getattr(module, "_orig_mod", module)
    return module.module if hasattr(module, "module") else module


def rank_state(loader: Any, device: torch.device, noise_gen: torch.Generator, distributed: bool) -> dict[str, Any]:
    """This process's part of a checkpoint: ``{"loader": position, "rng": rng_state}``.

    Under DDP the RNG states are moved to the CPU so that they can be gathered.
    """
    local = {"loader": loader.state_dict(), "rng": rng_state(device, noise_gen)}
    if distributed:
        local["rng"] = {k: v.cpu() if isinstance(v, Tensor) else v for k, v in local["rng"].items()}
    return local


def restore_rank_state(
    state: dict[str, Any], loader: Any, device: torch.device, noise_gen: torch.Generator, reseed: int | None = None
) -> bool:
    """Put back what :func:`rank_state` saved; whether every RNG state came back (see :func:`set_rng_state`)."""
    loader.load_state_dict(state["loader"])
    return set_rng_state(state["rng"], device, noise_gen, reseed)


def _weights(module: nn.Module | None) -> dict[str, Tensor] | None:
    if module is None:
        return None
    return {k: v.detach().cpu() for k, v in unwrap(module).state_dict().items()}


def _load_network(
    net: nn.Module, state: dict[str, Any], what: str, saved: dict[str, Any] | None, now: dict[str, Any] | None
) -> None:
    """``net.load_state_dict(state)``; weights that do not fit are one line naming what differs.

    Raises:
        CheckpointError: the checkpoint's ``what`` weights do not fit the network the run's
            config builds (its ``config.yaml`` was edited, or the file is another run's).
    """
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        differ = ""
        if saved and now:
            a, b = saved.get("kwargs") or {}, now.get("kwargs") or {}
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if saved.get("name") != now.get("name"):
                keys.insert(0, "name")
                a, b = {**a, "name": saved.get("name")}, {**b, "name": now.get("name")}
            if keys:
                differ = " (" + ", ".join(f"{k}: {a.get(k)!r} in the checkpoint, {b.get(k)!r} now" for k in keys) + ")"
        # torch's first line only names the class; the next one names a key that does not fit.
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__
        raise CheckpointError(
            f"the checkpoint's {what} weights do not fit the network of the run's config{differ}; "
            f"was its config.yaml edited? ({detail})"
        ) from None


@dataclass
class TrainingState:
    """The networks, optimizers and gradient scalers of a run (the trainer's own objects).

    Attributes:
        generator, discriminator, teacher: the networks (the last two None where
            the method has none).
        opt_g, opt_d: the generator's SGD and the discriminator's Adam (or None).
        scaler_g, scaler_d: the gradient scalers (enabled with fp16 AMP only).
    """

    generator: nn.Module
    discriminator: nn.Module | None
    teacher: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler

    def checkpoint(
        self,
        cfg: Config,
        created_by: str,
        iteration: int,
        lr: float,
        ranks: list[dict[str, Any]],
        best_val: float | None,
        world_size: int,
        preprocessing: dict[str, Any],
        clock: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The checkpoint dict of the run after ``iteration`` steps.

        Args:
            cfg: the run's resolved config (stored as a dict).
            created_by: the writer's name (``canet.training.Trainer``).
            iteration: completed steps.
            lr: the generator's learning rate of the next step.
            ranks: :func:`rank_state` of every DDP rank, in rank order.
            best_val: best validation Dice so far (None: none yet).
            world_size: number of processes.
            preprocessing: :func:`canet.data.preprocessing.describe_training_data`.
            clock: :meth:`canet.training.progress.RunClock.to_dict` (steady-state
                time and sessions, carried across resumes).
        """
        o = cfg.optimizer
        return make_checkpoint(
            self.generator,
            created_by,
            config=cfg.to_dict(),
            iteration=iteration,
            method=cfg.method,
            discriminator=_weights(self.discriminator),
            discriminator_model=model_spec(self.discriminator) if self.discriminator is not None else None,
            teacher=_weights(self.teacher),
            optimizers={
                "generator": self.opt_g.state_dict(),
                "discriminator": self.opt_d.state_dict() if self.opt_d is not None else None,
            },
            schedulers={
                "generator": {
                    "kind": "multistep",
                    "base_lr": o.lr,
                    "milestones": list(o.milestones),
                    "gamma": o.gamma,
                    "lr": lr,
                }
            },
            scalers={
                "generator": self.scaler_g.state_dict() if self.scaler_g.is_enabled() else None,
                "discriminator": self.scaler_d.state_dict() if self.scaler_d.is_enabled() else None,
            },
            ranks=ranks,
            best_val_dice=best_val,
            world_size=world_size,
            preprocessing=preprocessing,
            # The split validation runs on; best_val.pt adds selected_on (the split it was picked on).
            validation_split=cfg.validation.split if cfg.validation.every else None,
            selected_on=None,
            clock=clock,
        )

    def restore(self, payload: dict[str, Any], method: str, world_size: int) -> list[dict[str, Any]]:
        """Load networks, optimizers and scalers from ``payload``; return its per-rank states.

        Raises:
            CheckpointError: the checkpoint was written by another method or by
                another number of processes.
        """
        saved_cfg = payload.get("config") or {}
        if saved_cfg.get("method") != method:
            raise CheckpointError(
                f"checkpoint was written by method {saved_cfg.get('method')!r}, this run is {method!r}"
            )
        saved_spec = payload.get("model") or {}
        _load_network(self.generator, payload["generator"], "generator", saved_spec, model_spec(self.generator))
        if self.discriminator is not None:
            _load_network(self.discriminator, payload["discriminator"], "discriminator", None, None)
        if self.teacher is not None:
            _load_network(self.teacher, payload["teacher"], "teacher", saved_spec, model_spec(self.generator))
        opts = payload["optimizers"]
        self.opt_g.load_state_dict(opts["generator"])
        if self.opt_d is not None:
            self.opt_d.load_state_dict(opts["discriminator"])
        scalers = payload.get("scalers") or {}
        if scalers.get("generator"):
            self.scaler_g.load_state_dict(scalers["generator"])
        if scalers.get("discriminator"):
            self.scaler_d.load_state_dict(scalers["discriminator"])
        ranks = payload["ranks"]
        if len(ranks) != world_size:
            raise CheckpointError(
                f"checkpoint was written by {len(ranks)} process(es), this run has {world_size}; "
                "resume with the same number of processes"
            )
        return list(ranks)
