"""The supervised V-Net baseline: Dice (optionally with cross-entropy) on labeled cases only."""

from __future__ import annotations

from typing import Any, ClassVar

from canet.training.methods.base import Method


class SupervisedMethod(Method):
    """``vnet``: every batch row is labeled (``data.labeled_bs == data.batch_size``)."""

    name: ClassVar[str] = "vnet"
    arch: ClassVar[str] = "vnet"
    needs_unlabeled: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "model.transformer": False,
        "loss.seg_ce": False,
        "loss.sdf": False,
        "loss.adversarial": False,
    }
