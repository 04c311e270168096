"""Training configuration: a dataclass schema, loaded from YAML, validated, overridable.

A config file is a YAML mapping with the sections below (every key optional;
missing keys take the defaults, which are the paper's recipe for ``canet``)::

    method: canet          # canet | sassnet | vnet | mt | uamt
    seed: 1337
    iterations: 6000
    data:       {root, labeled, num_classes, patch_size, batch_size, labeled_bs, global_batch,
                 num_workers, check}
    model:      {n_filters, dropout, transformer}
    discriminator: {ndf, se, dropout, lr, betas}
    optimizer:  {lr, momentum, weight_decay, milestones, gamma}
    loss:       {seg_ce, sdf, beta, adversarial, adv_weight, consistency, rampup_length, rampup_interval}
    teacher:    {ema_decay, noise_std, noise_clip, passes}
    train:      {profile, device, amp, channels_last, compile, sync_bn, deterministic,
                 d_step_reuse_outputs, log_every, checkpoint_every, checkpoint_minutes,
                 keep_every}
    validation: {every, split, mode, lcc, overlap, max_cases}

Keys whose default is ``null`` and that depend on the method (``model.transformer``,
``discriminator.se``, ``loss.seg_ce``, ``loss.sdf``, ``loss.adversarial``) are filled
in by :func:`resolve` from the method's defaults (see
:data:`canet.training.methods.METHOD_DEFAULTS`); the resolved config, with every
key written out, is what a run saves as ``config.yaml``.

Where things live: the sections, types, defaults and the checks every method
shares are in :mod:`canet.training.schema`; the rules and defaults that depend
on the method come from the method classes
(:mod:`canet.training.methods.registry`). This module loads, overrides and
validates with both, so the imports run one way: ``config -> methods -> schema``.

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
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from canet.configs import find_config
from canet.errors import ConfigError
from canet.io import atomic_write_text
from canet.parsing import YamlValueError, dump_yaml, parse_yaml
from canet.training.methods.registry import (
    METHOD_CLASSES,
    check_method_config,
    method_class,
    resolve,
)
from canet.training.schema import (
    AMP_MODES,
    INFERENCE_MODES,
    PATCH_MULTIPLE,
    PROFILES,
    VALIDATION_SPLITS,
    Config,
    DataConfig,
    DiscriminatorConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TeacherConfig,
    TrainConfig,
    ValidationConfig,
    build_config,
    check_values,
    unknown_key,
)

#: The registered method names, in the registry's order.
METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)

__all__ = [
    "AMP_MODES",
    "INFERENCE_MODES",
    "METHODS",
    "PATCH_MULTIPLE",
    "PROFILES",
    "VALIDATION_SPLITS",
    "Config",
    "DataConfig",
    "DiscriminatorConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TeacherConfig",
    "TrainConfig",
    "ValidationConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
    "parse_overrides",
    "read_yaml",
    "resolve",
    "save_config",
    "validate",
]


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from a nested mapping (keys as in the YAML).

    Raises:
        ConfigError: unknown key, wrong type or bad value (see :func:`validate`).
    """
    cfg = build_config(data)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check every value of ``cfg``: the method first, then the shared values, then the method's rules.

    Raises:
        ConfigError: the first bad value, named by its dotted key.
    """
    method_class(cfg.method)
    check_values(cfg)
    check_method_config(cfg)


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"key.sub=value"`` into the dotted key and the YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except YamlValueError as exc:
        raise ConfigError(f"the value of --set {item!r}: {exc}") from None
    except yaml.YAMLError:
        raise ConfigError(f"cannot parse the value of --set {item!r} as YAML") from None
    return key, value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--set`` items as ``{dotted key: value}`` (each as :func:`parse_override` reads it).

    Raises:
        ConfigError: a malformed item, or a key given twice (the first would be dropped).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        if key in out:
            raise ConfigError(f"--set {key} is given twice ({out[key]!r} and {value!r}); keep one")
        out[key] = value
    return out


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
                raise unknown_key(dotted, hints, at=i)
            tp = hints[part]
            last = i == len(parts) - 1
            if dataclasses.is_dataclass(tp):
                section = ".".join(parts[: i + 1])
                child = node.get(part)
                if child is not None and not isinstance(child, Mapping):
                    # Checked here, before an override replaces it with a mapping of its own.
                    raise ConfigError(f"config key {section!r} is a section and must be a mapping, got {child!r}")
                if last:
                    if isinstance(value, Mapping):
                        node[part] = {**(child or {}), **value}
                        break
                    first = dataclasses.fields(tp)[0].name
                    raise ConfigError(
                        f"config key {dotted!r} is a section; set one of its keys, e.g. '{dotted}.{first}'"
                    )
                if child is None:
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
    """Read a YAML config file into a mapping (empty file -> ``{}``).

    Read with :func:`canet.parsing.parse_yaml`: a key written twice is refused
    (YAML would keep the last silently), and ``1e-3`` is a float.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {p}: it is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = parse_yaml(text)
    except YamlValueError as exc:
        raise ConfigError(f"{p}: {exc}") from None
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
            overrides = parse_overrides(overrides)
        data = apply_overrides(data, overrides)
    return config_from_dict(data)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Write the config as YAML (atomically), every key written out."""
    text = dump_yaml(cfg.to_dict())  # a string such as data.root "1e3" is quoted, so it reads back as one
    atomic_write_text(path, text)

