"""Training: the validated config, the one loop (:class:`Trainer`) and its hooks, methods as strategies.

- :mod:`canet.training.config` -- :class:`Config` (YAML, validated, ``--set`` overrides);
  its schema in :mod:`canet.training.schema`;
- :mod:`canet.training.trainer` -- :class:`Trainer`, :class:`Hook`, :func:`train`, :func:`resume`;
  beside it :mod:`~canet.training.run_files` (``config.yaml``, ``environment.json``),
  :mod:`~canet.training.run_log` (``metrics.csv``, TensorBoard, progress) and
  :mod:`~canet.training.state` (checkpoint training state, RNG states);
- :mod:`canet.training.methods` -- ``canet``, ``sassnet``, ``vnet``, ``mt``, ``uamt``
  (:mod:`~canet.training.methods.registry`: by name, their config rules and defaults);
- :mod:`canet.training.profiles` -- ``train.profile: exact | fast``;
- :mod:`canet.training.distributed` -- process-group helpers for ``torchrun``;
- :mod:`canet.training.demo` -- ``canet demo``.
"""

from canet.training.config import Config, load_config, resolve, save_config
from canet.training.methods import METHOD_CLASSES, Method, build_method
from canet.training.run_files import load_run_config
from canet.training.trainer import (
    Hook,
    Trainer,
    TrainingError,
    TrainResult,
    resume,
    step_lr,
    train,
)

__all__ = [
    "METHOD_CLASSES",
    "Config",
    "Hook",
    "Method",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "build_method",
    "load_config",
    "load_run_config",
    "resolve",
    "resume",
    "save_config",
    "step_lr",
    "train",
]
