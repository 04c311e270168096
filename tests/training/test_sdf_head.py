"""The SDF head is frozen exactly where no loss reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from canet.training.trainer import Trainer


@pytest.mark.parametrize(
    ("method", "overrides", "frozen"),
    [
        ("canet", {}, False),
        ("canet", {"loss__sdf": False}, False),  # the adversarial loss still reads it
        ("canet", {"loss__sdf": False, "loss__adversarial": False}, True),
        ("sassnet", {}, False),
        ("vnet", {}, True),
        ("mt", {}, True),
    ],
)
def test_sdf_head_frozen_only_when_unused(make_config, tmp_path: Path, method, overrides, frozen) -> None:
    trainer = Trainer(make_config(method, **overrides), tmp_path / "run", quiet=True)
    trainer.setup()
    try:
        head = trainer.generator.head_sdf
        assert all(p.requires_grad == (not frozen) for p in head.parameters())
        seg_head = trainer.generator.head_seg
        assert all(p.requires_grad for p in seg_head.parameters())
        if frozen:
            batch = next(trainer.loader)
            before = [p.detach().clone() for p in head.parameters()]
            trainer.train_step(batch, 0)
            assert all(p.grad is None for p in head.parameters())
            assert all((a == b).all() for a, b in zip(before, head.parameters()))
    finally:
        trainer.loader.close()
