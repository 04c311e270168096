"""The training config's schema: sections as dataclasses, built from a mapping, checked.

This module knows the keys, their types and defaults, and the checks of values
that hold for every method. It knows nothing of the methods themselves: the
method-dependent defaults and rules live with the method classes
(:mod:`canet.training.methods.registry`), and :mod:`canet.training.config`
(loading YAML, overrides, :func:`~canet.training.config.config_from_dict`)
applies both. The import arrows run ``config -> methods -> schema``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from canet.errors import ConfigError
from canet.patch_size import check_patch_size

AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
PROFILES: tuple[str, ...] = ("exact", "fast")
VALIDATION_SPLITS: tuple[str, ...] = ("validation", "test", "labeled")
INFERENCE_MODES: tuple[str, ...] = ("fast", "reference")
PATCH_MULTIPLE = 16
#: The largest seed a config may give (the trainer derives other seeds from it in 64 bits).
MAX_SEED = 2**32 - 1


@dataclass
class DataConfig:
    """Where the data is and how batches are drawn.

    Attributes:
        root: LA root folder or datalist (``null``: must come from ``--data``).
        labeled: labeled training cases (``null``: the dataset's own split;
            the LA benchmark's first N of ``train.list`` otherwise).
        num_classes: classes including background (``null``: from the dataset).
        patch_size: training patch ``[X, Y, Z]``, multiples of 16.
        batch_size: cases per batch (per process under DDP, unless ``global_batch``).
        labeled_bs: labeled cases per batch (the first rows).
        global_batch: ``batch_size`` and ``labeled_bs`` count the rows of one
            iteration over all processes: under torchrun each of N processes
            takes ``batch_size / N`` rows, ``labeled_bs / N`` of them labeled
            (both must divide by N), so that N GPUs keep the paper's batch of
            4 with 2 labeled at its learning rate and iteration count. Off
            (default): they count per process, and N processes train on N
            times the rows (said at the start of such a run).
        num_workers: loader worker processes (0 = in the training process).
        check: check every case when training starts, as ``canet check-data``
            does, and stop on a problem (``false``, or ``canet train
            --skip-data-check``, skips it for trusted data).
    """

    root: str | None = None
    labeled: int | None = None
    num_classes: int | None = None
    patch_size: tuple[int, int, int] = (112, 112, 80)
    batch_size: int = 4
    labeled_bs: int = 2
    global_batch: bool = False
    num_workers: int = 2
    check: bool = True


@dataclass
class ModelConfig:
    """Generator settings (``transformer``: Trans-V's transformer; ``null`` = method default)."""

    n_filters: int = 16
    dropout: float = 0.5
    transformer: bool | None = None


@dataclass
class DiscriminatorConfig:
    """DAM discriminator and its Adam optimizer (``se``: ``null`` = method default)."""

    ndf: int = 64
    se: bool | None = None
    dropout: float = 0.5
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)


@dataclass
class OptimizerConfig:
    """Generator SGD and its step schedule (lr times ``gamma`` at each milestone)."""

    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (2500, 3800)
    gamma: float = 0.1


@dataclass
class LossConfig:
    """Loss terms and weights.

    Attributes:
        seg_ce: segmentation loss is ``0.5 * (Dice + cross-entropy)`` instead of
            Dice alone (``null`` = method default: on for mt/uamt as UA-MT).
        sdf: add ``beta * MSE(sdf, SDM(y))`` on labeled cases (``null`` = method default).
        beta: SDF loss weight (0.3).
        adversarial: adversarial loss on unlabeled cases (canet/sassnet; ``null`` = method default).
        adv_weight: final adversarial weight (0.01), ramped up.
        consistency: final consistency weight of mt/uamt (0.1), ramped up.
        rampup_length, rampup_interval: weights ramp as
            ``w * exp(-5 (1 - t/length)^2)``, ``t = min(iteration // interval, length)``.
    """

    seg_ce: bool | None = None
    sdf: bool | None = None
    beta: float = 0.3
    adversarial: bool | None = None
    adv_weight: float = 0.01
    consistency: float = 0.1
    rampup_length: float = 40.0
    rampup_interval: int = 150


@dataclass
class TeacherConfig:
    """Mean teacher (mt/uamt): EMA decay, input noise ``clip(N(0, std), -clip, clip)``, UA-MT passes T."""

    ema_decay: float = 0.99
    noise_std: float = 0.1
    noise_clip: float = 0.2
    passes: int = 8


@dataclass
class TrainConfig:
    """Runtime settings.

    Attributes:
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: ``none``, ``bf16`` or ``fp16`` mixed precision (CUDA only).
        channels_last: use the ``channels_last_3d`` memory format.
        compile: ``torch.compile`` the generator's training forward, the
            discriminator and the D step's eval-mode generator forward. Same
            maths as eager mode, but compiled dropout draws its random numbers
            differently, so a compiled run does not repeat an eager run's
            numbers exactly.
        sync_bn: SyncBatchNorm under DDP.
        deterministic: ``torch.use_deterministic_algorithms`` (warn only) and no cuDNN benchmark.
        d_step_reuse_outputs: the discriminator step reuses the generator step's
            detached outputs instead of re-predicting the batch in eval mode.
        log_every: iterations between metrics.csv rows / log lines.
        checkpoint_every: iterations between writes of ``checkpoints/last.pt``.
        checkpoint_minutes: also write ``checkpoints/last.pt`` when this many
            minutes of wall time have passed since the last write (0 = only
            ``checkpoint_every``), so that a kill at any moment loses at most
            about this much work.
        keep_every: iterations between kept ``checkpoints/iter_<N>.pt`` (0 = none).
        profile: ``exact`` (default: the paper's fp32 semantics, a finiteness
            check after every step) or ``fast`` (GPU speed settings, see
            :func:`canet.training.profiles.apply_profile`; the settings it
            chose are written into the run's ``config.yaml``).
    """

    profile: str = "exact"
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    deterministic: bool = True
    d_step_reuse_outputs: bool = False
    log_every: int = 10
    checkpoint_every: int = 500
    checkpoint_minutes: float = 10.0
    keep_every: int = 1000


@dataclass
class ValidationConfig:
    """Validation during training (``every: 0`` turns it off; never the test split by default).

    ``lcc`` (largest-connected-component post-processing) ``null`` takes the
    dataset's default: on for the LA layout, a datalist's ``postprocess.lcc``.
    """

    every: int = 0
    split: str = "validation"
    mode: str = "fast"
    lcc: bool | None = None
    overlap: float = 0.5
    max_cases: int | None = None


@dataclass
class Config:
    """A whole training configuration (the file layout is in :mod:`canet.training.config`).

    ``method`` names a registered method (:data:`canet.training.methods.METHOD_CLASSES`).
    """

    method: str = "canet"
    seed: int = 1337
    iterations: int = 6000
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), fit for YAML and checkpoints."""
        return _plain(dataclasses.asdict(self))

    def get(self, dotted: str) -> Any:
        """Value of a dotted key, e.g. ``cfg.get("optimizer.lr")``."""
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj



# --------------------------------------------------------------------------- building


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


_PLURALS: dict[Any, str] = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        plural = _PLURALS.get(args[0], "values")
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {plural}"
        return f"a list of {len(args)} {plural}"
    if tp is type(None):
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key} must be {_type_name(tp)}, got {list(value)!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(float(value)):  # .inf, 1e400 (YAML reads it as inf) and .nan
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def unknown_key(dotted: str, known: typing.Iterable[str], at: int = -1) -> ConfigError:
    """The error for a config key ``dotted`` whose part ``at`` (default the last) is none of
    ``known`` (the names beside it), with the closest one as a guess (``model.nfilters``:
    did you mean ``model.n_filters``?)."""
    import difflib

    parts = dotted.split(".")
    close = difflib.get_close_matches(parts[at], list(known), n=1, cutoff=0.75)
    if close:
        parts[at] = close[0]
    hint = f"; did you mean {'.'.join(parts)!r}?" if close else ""
    return ConfigError(f"unknown config key {dotted!r}{hint}")


def _build(cls: type[Any], data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str) or key not in names:
            raise unknown_key(dotted, names)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {dotted!r} is a section and must be a mapping, got {value!r}")
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(value, tp, dotted)
    return cls(**kwargs)



def build_config(data: Mapping[str, Any] | None) -> Config:
    """Build a :class:`Config` from a nested mapping, checking keys and types only.

    Values are checked by :func:`check_values` and the method's rules by
    :func:`canet.training.methods.registry.check_method_config`;
    :func:`canet.training.config.config_from_dict` runs all three.

    Raises:
        ConfigError: not a mapping, an unknown key or a wrong type, named by its dotted key.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of keys to values, got {data!r}")
    return _build(Config, data)


# --------------------------------------------------------------------------- checks


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def check_values(cfg: Config) -> None:
    """Check the values that every method shares (types were checked when building).

    ``method`` itself and the keys whose meaning depends on it
    (``data.labeled_bs`` against ``data.batch_size``, ``model.transformer``,
    ``loss.adversarial``, ``discriminator.se``) are checked by
    :func:`canet.training.methods.registry.check_method_config`.

    Raises:
        ConfigError: the first bad value, named by its dotted key.
    """
    # the trainer derives further seeds as seed * 1000 + ..., which torch keeps in 64 bits
    _check(0 <= cfg.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED} (2**32 - 1), got {cfg.seed}")
    _check(cfg.iterations >= 1, f"iterations must be >= 1, got {cfg.iterations}")

    d = cfg.data
    check_patch_size(list(d.patch_size), multiple=PATCH_MULTIPLE, name="data.patch_size")
    _check(d.labeled is None or d.labeled >= 1, f"data.labeled must be >= 1, got {d.labeled}")
    _check(
        d.num_classes is None or d.num_classes >= 2,
        f"data.num_classes must be >= 2 (background included), got {d.num_classes}",
    )
    _check(d.batch_size >= 1, f"data.batch_size must be >= 1, got {d.batch_size}")
    _check(
        1 <= d.labeled_bs <= d.batch_size,
        f"data.labeled_bs must be in [1, data.batch_size={d.batch_size}], got {d.labeled_bs}",
    )
    _check(d.num_workers >= 0, f"data.num_workers must be >= 0, got {d.num_workers}")

    m = cfg.model
    _check(m.n_filters >= 1, f"model.n_filters must be >= 1, got {m.n_filters}")
    _check(0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}")

    dc = cfg.discriminator
    _check(dc.ndf >= 1, f"discriminator.ndf must be >= 1, got {dc.ndf}")
    _check(0 <= dc.dropout < 1, f"discriminator.dropout must be in [0, 1), got {dc.dropout}")
    _check(dc.lr > 0, f"discriminator.lr must be > 0, got {dc.lr}")
    _check(all(0 <= b < 1 for b in dc.betas), f"discriminator.betas must be in [0, 1), got {list(dc.betas)}")

    o = cfg.optimizer
    _check(o.lr > 0, f"optimizer.lr must be > 0, got {o.lr}")
    _check(0 <= o.momentum < 1, f"optimizer.momentum must be in [0, 1), got {o.momentum}")
    _check(o.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {o.weight_decay}")
    _check(o.gamma > 0, f"optimizer.gamma must be > 0, got {o.gamma}")
    ms = list(o.milestones)
    _check(
        all(x >= 1 for x in ms) and ms == sorted(set(ms)),
        f"optimizer.milestones must be increasing positive integers, got {ms}",
    )

    loss = cfg.loss
    for name in ("beta", "adv_weight", "consistency", "rampup_length"):
        value = getattr(loss, name)
        _check(value >= 0, f"loss.{name} must be >= 0, got {value}")
    _check(loss.rampup_interval >= 1, f"loss.rampup_interval must be >= 1, got {loss.rampup_interval}")

    t = cfg.teacher
    _check(0 <= t.ema_decay < 1, f"teacher.ema_decay must be in [0, 1), got {t.ema_decay}")
    _check(t.noise_std >= 0, f"teacher.noise_std must be >= 0, got {t.noise_std}")
    _check(t.noise_clip > 0, f"teacher.noise_clip must be > 0, got {t.noise_clip}")
    _check(t.passes >= 1, f"teacher.passes must be >= 1, got {t.passes}")

    tr = cfg.train
    _check(_valid_device(tr.device), f"train.device must be auto, cpu, cuda or cuda:N, got {tr.device!r}")
    _check(tr.amp in AMP_MODES, f"train.amp must be one of {', '.join(AMP_MODES)}, got {tr.amp!r}")
    _check(tr.profile in PROFILES, f"train.profile must be one of {', '.join(PROFILES)}, got {tr.profile!r}")
    _check(tr.log_every >= 1, f"train.log_every must be >= 1, got {tr.log_every}")
    _check(tr.checkpoint_every >= 1, f"train.checkpoint_every must be >= 1, got {tr.checkpoint_every}")
    _check(
        tr.checkpoint_minutes >= 0 and tr.checkpoint_minutes == tr.checkpoint_minutes,
        f"train.checkpoint_minutes must be >= 0, got {tr.checkpoint_minutes}",
    )
    _check(tr.keep_every >= 0, f"train.keep_every must be >= 0, got {tr.keep_every}")

    v = cfg.validation
    _check(v.every >= 0, f"validation.every must be >= 0, got {v.every}")
    _check(
        v.split in VALIDATION_SPLITS,
        f"validation.split must be one of {', '.join(VALIDATION_SPLITS)}, got {v.split!r}",
    )
    _check(v.mode in INFERENCE_MODES, f"validation.mode must be one of {', '.join(INFERENCE_MODES)}, got {v.mode!r}")
    _check(0 <= v.overlap < 1, f"validation.overlap must be in [0, 1), got {v.overlap}")
    _check(v.max_cases is None or v.max_cases >= 1, f"validation.max_cases must be >= 1, got {v.max_cases}")


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda"):
        return True
    return device.startswith("cuda:") and device[5:].isdigit()

