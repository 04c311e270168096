"""predict_volume keeps the model's memory format and runs fp32 inference with fp32 switches."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from canet.inferers import predict_volume
from canet.inferers.predict import is_channels_last
from canet.models import create_model


def _layouts(model: nn.Module) -> dict[str, tuple[bool, bool]]:
    """``name -> (contiguous, channels_last_3d contiguous)`` of every 5-D parameter."""
    return {
        name: (p.is_contiguous(), p.is_contiguous(memory_format=torch.channels_last_3d))
        for name, p in model.named_parameters()
        if p.dim() == 5
    }


def test_a_one_channel_first_weight_cannot_tell_the_layout() -> None:
    first = nn.Conv3d(1, 4, 3)  # C_out x 1 x 3 x 3 x 3: the same strides in both formats
    assert first.weight.is_contiguous()
    assert first.weight.is_contiguous(memory_format=torch.channels_last_3d)
    model = nn.Sequential(first, nn.Conv3d(4, 4, 3))
    assert not is_channels_last(model)
    model.to(memory_format=torch.channels_last_3d)
    # The old rule (first 5-D weight, "channels_last and not contiguous") said False here.
    assert is_channels_last(model)
    assert is_channels_last(nn.Sequential(nn.Conv3d(1, 4, 1)))  # nothing can tell: nothing to convert
    assert is_channels_last(nn.Linear(3, 3))


def test_a_channels_last_model_keeps_every_weight_in_its_layout() -> None:
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=4).to(memory_format=torch.channels_last_3d)
    before = _layouts(model)
    decisive = [name for name, (std, last) in before.items() if std != last]
    assert decisive and all(before[n] == (False, True) for n in decisive)
    image = np.random.default_rng(0).normal(size=(36, 36, 20)).astype(np.float32)
    predict_volume(model, image, (32, 32, 16), mode="fast", device="cpu")
    assert _layouts(model) == before


def test_a_standard_model_run_in_channels_last_is_put_back() -> None:
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=4)
    before = _layouts(model)
    assert all(std for std, _ in before.values())
    image = np.random.default_rng(0).normal(size=(36, 36, 20)).astype(np.float32)
    predict_volume(model, image, (32, 32, 16), mode="fast", channels_last=True, device="cpu")
    assert _layouts(model) == before


class _Recorder(nn.Module):
    """Logits = input; records the TF32 and benchmark switches seen by its forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
        )
        return x * self.w


def test_fp32_inference_turns_tf32_and_benchmark_off_and_puts_them_back() -> None:
    # What a process may hold before: torch's default cuDNN TF32, and a fast run's switches.
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = _Recorder()
    predict_volume(model, np.zeros((16, 16, 16), np.float32), (16, 16, 16), device="cpu")
    assert model.seen and set(model.seen) == {(False, False, False)}
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.benchmark
