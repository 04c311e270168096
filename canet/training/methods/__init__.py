"""Training methods as strategies: ``canet``, ``sassnet``, ``vnet``, ``mt``, ``uamt``.

Each supplies its networks and losses to the one loop in
:class:`canet.training.trainer.Trainer` (see :class:`Method`).
"""

from __future__ import annotations

from typing import Any

from canet.errors import ConfigError
from canet.training.methods.adversarial import (
    AdversarialSDFMethod,
    CANetMethod,
    SASSNetMethod,
    domain_targets,
)
from canet.training.methods.base import Method, StepContext
from canet.training.methods.supervised import SupervisedMethod
from canet.training.methods.teacher import MeanTeacherMethod, UAMTMethod, ema_update

METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (CANetMethod, SASSNetMethod, SupervisedMethod, MeanTeacherMethod, UAMTMethod)
}

#: Values of the config's method-dependent ``null`` keys, per method.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(cls.defaults) for name, cls in METHOD_CLASSES.items()
}


def build_method(cfg: Any, num_classes: int) -> Method:
    """The strategy for ``cfg.method`` (a resolved :class:`canet.training.config.Config`)."""
    try:
        cls = METHOD_CLASSES[cfg.method]
    except KeyError:
        raise ConfigError(
            f"method must be one of {', '.join(METHOD_CLASSES)}, got {cfg.method!r}"
        ) from None
    return cls(cfg, num_classes)


__all__ = [
    "METHOD_CLASSES",
    "METHOD_DEFAULTS",
    "AdversarialSDFMethod",
    "CANetMethod",
    "MeanTeacherMethod",
    "Method",
    "SASSNetMethod",
    "StepContext",
    "SupervisedMethod",
    "UAMTMethod",
    "build_method",
    "domain_targets",
    "ema_update",
]
