"""The fused (``torch._foreach_``) EMA update equals the per-parameter formula bit for bit."""

from __future__ import annotations

import copy

import pytest
import torch

from canet.models import create_model
from canet.training.methods import ema_update


def _loop_reference(teacher: torch.nn.Module, student: torch.nn.Module, decay: float, step: int) -> None:
    alpha = min(1.0 - 1.0 / (step + 1), decay)
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)


@pytest.mark.parametrize("step", [0, 3, 5000])
def test_fused_ema_matches_loop_bitwise(step: int) -> None:
    torch.manual_seed(0)
    student = create_model("vnet", n_filters=4)
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    expected = copy.deepcopy(teacher)
    _loop_reference(expected, student, 0.99, step)
    ema_update(teacher, student, 0.99, step)
    for (name, got), want in zip(teacher.named_parameters(), expected.parameters()):
        assert torch.equal(got, want), name
    # Buffers (BatchNorm statistics) stay the teacher's own.
    for (name, got), want in zip(teacher.named_buffers(), expected.named_buffers()):
        assert torch.equal(got, want[1]), name


def test_ema_refuses_mismatched_networks() -> None:
    with pytest.raises(ValueError, match="parameter tensors"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Sequential(), 0.99, 1)
