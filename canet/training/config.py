"""Training configuration: a dataclass schema, loaded from YAML, validated, overridable.

A config file is a YAML mapping with the sections below (every key optional;
missing keys take the defaults, which are the paper's recipe for ``canet``)::

    method: canet          # canet | sassnet | vnet | mt | uamt
    seed: 1337
    iterations: 6000
    data:       {root, labeled, num_classes, patch_size, batch_size, labeled_bs, num_workers, check}
    model:      {n_filters, dropout, transformer}
    discriminator: {ndf, se, dropout, lr, betas}
    optimizer:  {lr, momentum, weight_decay, milestones, gamma}
    loss:       {seg_ce, sdf, beta, adversarial, adv_weight, consistency, rampup_length, rampup_interval}
    teacher:    {ema_decay, noise_std, noise_clip, passes}
    train:      {profile, device, amp, channels_last, compile, sync_bn, deterministic,
                 d_step_reuse_outputs, log_every, checkpoint_every, keep_every}
    validation: {every, split, mode, lcc, overlap, max_cases}

Keys whose default is ``null`` and that depend on the method (``model.transformer``,
``discriminator.se``, ``loss.seg_ce``, ``loss.sdf``, ``loss.adversarial``) are filled
in by :func:`resolve` from the method's defaults (see
:data:`canet.training.methods.METHOD_DEFAULTS`); the resolved config, with every
key written out, is what a run saves as ``config.yaml``.

The shipped configs (``canet/configs/*.yaml``, see :mod:`canet.configs`) are
loaded by name: ``load_config("la_canet_16")``. ``data.root`` is ``null`` in
them: pass ``--data`` (the LA root
folder or a datalist). A relative ``data.root`` is taken relative to the current
working directory and stored absolute in the resolved config.

Overrides use dotted keys with YAML-parsed values (``--set optimizer.lr=0.02``,
``--set data.patch_size=[96,96,64]``). An unknown key or a bad value raises
:class:`canet.errors.ConfigError` with a one-line message that names it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from canet.configs import find_config
from canet.errors import ConfigError
from canet.io import atomic_write_text

METHODS: tuple[str, ...] = ("canet", "sassnet", "vnet", "mt", "uamt")
AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
PROFILES: tuple[str, ...] = ("exact", "fast")
VALIDATION_SPLITS: tuple[str, ...] = ("validation", "test", "labeled")
INFERENCE_MODES: tuple[str, ...] = ("fast", "reference")
PATCH_MULTIPLE = 16


@dataclass
class DataConfig:
    """Where the data is and how batches are drawn.

    Attributes:
        root: LA root folder or datalist (``null``: must come from ``--data``).
        labeled: labeled training cases (``null``: the dataset's own split;
            the LA benchmark's first N of ``train.list`` otherwise).
        num_classes: classes including background (``null``: from the dataset).
        patch_size: training patch ``[X, Y, Z]``, multiples of 16.
        batch_size: cases per batch (per process under DDP).
        labeled_bs: labeled cases per batch (the first rows).
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
        compile: ``torch.compile`` the generator's training forward and the
            discriminator (the D step's eval-mode generator forward stays eager:
            compiling it gave no measurable gain on a 2-core CPU). Same maths as eager
            mode, but compiled dropout draws its random numbers differently, so a
            compiled run does not repeat an eager run's numbers exactly.
        sync_bn: SyncBatchNorm under DDP.
        deterministic: ``torch.use_deterministic_algorithms`` (warn only) and no cuDNN benchmark.
        d_step_reuse_outputs: the discriminator step reuses the generator step's
            detached outputs instead of re-predicting the batch in eval mode.
        log_every: iterations between metrics.csv rows / log lines.
        checkpoint_every: iterations between writes of ``checkpoints/last.pt``.
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
    """A whole training configuration (see the module docstring)."""

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
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _build(cls: type[Any], data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str) or key not in names:
            raise ConfigError(f"unknown config key {dotted!r}")
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


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from a nested mapping (keys as in the YAML).

    Raises:
        ConfigError: unknown key, wrong type or bad value (see :func:`validate`).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of keys to values, got {data!r}")
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"key.sub=value"`` into the dotted key and the YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"cannot parse the value of --set {item!r} as YAML") from None
    return key, value


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of the nested mapping ``data`` with dotted-key ``overrides`` set.

    Raises:
        ConfigError: a key that the schema does not have, or a section set to a scalar.
    """
    out = _deep_copy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        cls: Any = Config
        node = out
        for i, part in enumerate(parts):
            hints = typing.get_type_hints(cls)
            if part not in hints:
                raise ConfigError(f"unknown config key {dotted!r}")
            tp = hints[part]
            last = i == len(parts) - 1
            if dataclasses.is_dataclass(tp):
                if last:
                    if isinstance(value, Mapping):
                        node[part] = {**(node.get(part) or {}), **value}
                        break
                    first = dataclasses.fields(tp)[0].name
                    raise ConfigError(
                        f"config key {dotted!r} is a section; set one of its keys, e.g. '{dotted}.{first}'"
                    )
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node, cls = child, tp
            else:
                if not last:
                    raise ConfigError(f"unknown config key {dotted!r}")
                node[part] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a mapping (empty file -> ``{}``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"cannot parse {p} as YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> Config:
    """Load a YAML config, apply overrides, validate.

    Args:
        path: YAML file or the name of a packaged config (``la_canet_16``, see
            :func:`canet.configs.find_config`); ``None``: defaults only.
        overrides: dotted keys to values (``{"optimizer.lr": 0.02}``) or
            ``"key=value"`` strings as given to ``--set``.

    Raises:
        ConfigError: missing/unparsable file, unknown name, unknown key or bad value.
    """
    data = read_yaml(find_config(path)) if path is not None else {}
    if overrides:
        if not isinstance(overrides, Mapping):
            overrides = dict(parse_override(item) for item in overrides)
        data = apply_overrides(data, overrides)
    return config_from_dict(data)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the config as YAML (atomically), every key written out."""
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write_text(path, text)


# --------------------------------------------------------------------------- validation


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Check values (types were checked when building).

    Raises:
        ConfigError: the first bad value, named by its dotted key.
    """
    _check(cfg.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    _check(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")
    _check(cfg.iterations >= 1, f"iterations must be >= 1, got {cfg.iterations}")

    d = cfg.data
    _check(
        all(s >= PATCH_MULTIPLE and s % PATCH_MULTIPLE == 0 for s in d.patch_size),
        f"patch_size must be 3 positive multiples of {PATCH_MULTIPLE}, got {list(d.patch_size)}",
    )
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
    if cfg.method == "vnet":
        _check(
            d.labeled_bs == d.batch_size,
            f"method 'vnet' trains on labeled cases only: data.labeled_bs must equal "
            f"data.batch_size ({d.batch_size}), got {d.labeled_bs}",
        )
    else:
        _check(
            d.labeled_bs < d.batch_size,
            f"method {cfg.method!r} needs unlabeled cases in every batch: data.labeled_bs must be "
            f"< data.batch_size ({d.batch_size}), got {d.labeled_bs}",
        )

    m = cfg.model
    _check(m.n_filters >= 1, f"model.n_filters must be >= 1, got {m.n_filters}")
    _check(0 <= m.dropout < 1, f"model.dropout must be in [0, 1), got {m.dropout}")
    if m.transformer and cfg.method != "canet":
        raise ConfigError(f"model.transformer applies to method 'canet' only, got method {cfg.method!r}")

    dc = cfg.discriminator
    _check(dc.ndf >= 1, f"discriminator.ndf must be >= 1, got {dc.ndf}")
    _check(0 <= dc.dropout < 1, f"discriminator.dropout must be in [0, 1), got {dc.dropout}")
    _check(dc.lr > 0, f"discriminator.lr must be > 0, got {dc.lr}")
    _check(all(0 <= b < 1 for b in dc.betas), f"discriminator.betas must be in [0, 1), got {list(dc.betas)}")

    o = cfg.optimizer
    _check(o.lr > 0, f"optimizer.lr must be > 0, got {o.lr}")
    _check(o.momentum >= 0, f"optimizer.momentum must be >= 0, got {o.momentum}")
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
    if loss.adversarial and cfg.method not in ("canet", "sassnet"):
        raise ConfigError(
            f"loss.adversarial applies to methods 'canet' and 'sassnet' only, got method {cfg.method!r}"
        )
    if dc.se is not None and cfg.method not in ("canet", "sassnet"):
        raise ConfigError(
            f"discriminator.se applies to methods 'canet' and 'sassnet' only, got method {cfg.method!r}"
        )

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


def resolve(cfg: Config) -> Config:
    """Fill the method-dependent ``null`` keys from the method's defaults (a new Config)."""
    from canet.training.methods import METHOD_DEFAULTS

    data = cfg.to_dict()
    for dotted, value in METHOD_DEFAULTS[cfg.method].items():
        section, key = dotted.split(".")
        if data[section][key] is None:
            data[section][key] = value
    return config_from_dict(data)
