"""Training methods as strategies: ``canet``, ``sassnet``, ``vnet``, ``mt``, ``uamt``.

Each supplies its networks and losses to the one loop in
:class:`canet.training.trainer.Trainer` (see :class:`Method`);
:mod:`canet.training.methods.registry` finds them by name and turns what each
class says it needs into the config's method rules and defaults.
"""

from __future__ import annotations

from canet.training.methods.adversarial import (
    AdversarialSDFMethod,
    CANetMethod,
    SASSNetMethod,
    domain_targets,
)
from canet.training.methods.base import Method, StepContext
from canet.training.methods.registry import (
    METHOD_CLASSES,
    METHOD_DEFAULTS,
    build_method,
    check_method_config,
    method_class,
    resolve,
    unused_keys_warning,
)
from canet.training.methods.supervised import SupervisedMethod
from canet.training.methods.teacher import MeanTeacherMethod, UAMTMethod, ema_update

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
    "check_method_config",
    "domain_targets",
    "ema_update",
    "method_class",
    "resolve",
    "unused_keys_warning",
]
