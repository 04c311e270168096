"""The methods by name: building one, its config rules and its config defaults.

The method classes say what they need (:attr:`Method.needs_unlabeled`,
:attr:`Method.has_discriminator`, :attr:`Method.arch`, :attr:`Method.defaults`);
this registry turns that into the checks and defaults of a
:class:`~canet.training.schema.Config`. It sits between the schema (below) and
:mod:`canet.training.config` (above), which runs these checks on every config
it builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from canet.errors import ConfigError
from canet.training.methods.adversarial import CANetMethod, SASSNetMethod
from canet.training.methods.base import TRANSFORMER_ARCH, Method
from canet.training.methods.supervised import SupervisedMethod
from canet.training.methods.teacher import MeanTeacherMethod, UAMTMethod
from canet.training.schema import (
    Config,
    DiscriminatorConfig,
    TeacherConfig,
    build_config,
    check_values,
)

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (CANetMethod, SASSNetMethod, SupervisedMethod, MeanTeacherMethod, UAMTMethod)
}

#: Values of the config's method-dependent ``null`` keys, per method.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(cls.defaults) for name, cls in METHOD_CLASSES.items()
}


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name``.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the names).
    """
    try:
        return METHOD_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"method must be one of {', '.join(METHOD_CLASSES)}, got {name!r}"
        ) from None


def _methods_where(test: Callable[[type[Method]], bool]) -> str:
    """``"method 'a'"`` or ``"methods 'a' and 'b'"``: the registered methods that pass ``test``."""
    names = [f"'{name}'" for name, cls in METHOD_CLASSES.items() if test(cls)]
    if len(names) == 1:
        return f"method {names[0]}"
    return f"methods {', '.join(names[:-1])} and {names[-1]}"


def check_method_config(cfg: Config) -> None:
    """Check ``cfg.method`` and the keys whose validity depends on it.

    - ``data.labeled_bs``: ``== data.batch_size`` for a method that trains on
      labeled cases only, ``< data.batch_size`` for one that needs unlabeled rows;
    - ``model.transformer: true``: only for a method with the Trans-V generator;
    - ``loss.adversarial: true`` and any ``discriminator.se``: only for a method
      that can train a discriminator.

    Keys the method never reads are not refused (one base config may serve several
    methods); a run names them at its start (:func:`unused_keys_warning`).

    Raises:
        ConfigError: an unknown method or the first rule broken, in one line.
    """
    cls = method_class(cfg.method)
    d = cfg.data
    if not cls.needs_unlabeled and d.labeled_bs != d.batch_size:
        raise ConfigError(
            f"method {cfg.method!r} trains on labeled cases only: data.labeled_bs must equal "
            f"data.batch_size ({d.batch_size}), got {d.labeled_bs}"
        )
    if cls.needs_unlabeled and d.labeled_bs >= d.batch_size:
        raise ConfigError(
            f"method {cfg.method!r} needs unlabeled cases in every batch: data.labeled_bs must be "
            f"< data.batch_size ({d.batch_size}), got {d.labeled_bs}"
        )
    if cfg.model.transformer and cls.arch != TRANSFORMER_ARCH:
        where = _methods_where(lambda c: c.arch == TRANSFORMER_ARCH)
        raise ConfigError(f"model.transformer applies to {where} only, got method {cfg.method!r}")
    if not cls.has_discriminator:
        where = _methods_where(lambda c: c.has_discriminator)
        if cfg.loss.adversarial:
            raise ConfigError(f"loss.adversarial applies to {where} only, got method {cfg.method!r}")
        if cfg.discriminator.se is not None:
            raise ConfigError(f"discriminator.se applies to {where} only, got method {cfg.method!r}")


def unused_keys_warning(cfg: Config) -> str | None:
    """The warning a run prints at its start when ``cfg`` sets keys its method never reads.

    Those are, set to other than their defaults: ``discriminator.*`` and ``loss.adv_weight``
    for a method without a discriminator, ``teacher.*`` and ``loss.consistency`` for one
    without a mean teacher, ``loss.rampup_*`` for one with neither (a training change
    that does nothing, maybe a slip for another method). An ablation's leftovers, such as
    the discriminator settings of ``loss.adversarial: false``, are not named. None when
    there are none.
    """
    cls = method_class(cfg.method)
    default = Config()
    unused = []
    for dotted in _unread_keys(cls):
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value != getattr(getattr(default, section), key):
            unused.append(f"{dotted} ({value!r})")
    if not unused:
        return None
    return (f"warning: method {cfg.method!r} does not use {', '.join(unused)}: "
            f"{'it has' if len(unused) == 1 else 'they have'} no effect on this run")


def _unread_keys(cls: type[Method]) -> list[str]:
    """The dotted keys that method ``cls`` never reads, whatever its ablation switches say."""
    keys: list[str] = []
    if not cls.has_discriminator:
        keys += [f"discriminator.{f.name}" for f in dataclasses.fields(DiscriminatorConfig) if f.name != "se"]
        keys.append("loss.adv_weight")
    if not cls.has_teacher:
        keys += [f"teacher.{f.name}" for f in dataclasses.fields(TeacherConfig)]
        keys.append("loss.consistency")
    if not (cls.has_discriminator or cls.has_teacher):  # no weight to ramp up
        keys += ["loss.rampup_length", "loss.rampup_interval"]
    return keys


def resolve(cfg: Config) -> Config:
    """A new config with the method-dependent ``null`` keys set to the method's defaults.

    Keys the config sets keep their value (the ablations); the result is checked
    as :func:`canet.training.config.config_from_dict` checks a config.

    Raises:
        ConfigError: an unknown method, or a value the method does not accept.
    """
    cls = method_class(cfg.method)
    data = cfg.to_dict()
    for dotted, value in cls.defaults.items():
        section, key = dotted.split(".")
        if data[section][key] is None:
            data[section][key] = value
    resolved = build_config(data)
    check_values(resolved)
    check_method_config(resolved)
    return resolved


def build_method(cfg: Config, num_classes: int) -> Method:
    """The strategy for ``cfg.method`` (a resolved config)."""
    return method_class(cfg.method)(cfg, num_classes)
