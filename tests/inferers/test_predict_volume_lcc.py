"""predict_volume (probabilities, thresholds, TTA, modes) and largest-connected-component."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from canet.errors import CanetError
from canet.inferers import (
    largest_component_per_class,
    largest_connected_component,
    predict_volume,
)


class FakeOutput(NamedTuple):
    seg: Tensor
    sdf: Tensor


class ScaledInput(nn.Module):
    """Logits = scale * input (per channel offsets for multi-class), returned as a SegOutput."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.channels = channels

    def forward(self, x: Tensor) -> FakeOutput:
        if self.channels == 1:
            seg = self.scale * x
        else:  # class c wins where x is closest to c
            seg = torch.cat([-(x - c) ** 2 * self.scale for c in range(self.channels)], dim=1)
        return FakeOutput(seg, torch.tanh(seg))


def test_lcc_keeps_the_largest_26_connected_component() -> None:
    m = np.zeros((12, 12, 12), np.uint8)
    m[1:4, 1:4, 1:4] = 1  # 27 voxels
    m[4, 4, 4] = 1  # touches the cube only at a corner: 26-connected to it
    m[8:11, 8:11, 8:10] = 1  # 18 voxels, separate
    out = largest_connected_component(m)
    assert out.dtype == np.uint8
    assert out.sum() == 28 and out[4, 4, 4] == 1 and out[9, 9, 9] == 0
    assert largest_connected_component(np.zeros((3, 3, 3), bool)).sum() == 0
    single = np.zeros((5, 5, 5), bool)
    single[2, 2, 2] = True
    assert largest_connected_component(single).dtype == bool and largest_connected_component(single).sum() == 1


def test_lcc_per_class() -> None:
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[0:3, 0:3, 0:3] = 1
    lab[6, 6, 6] = 1
    lab[5:9, 0:3, 0:3] = 2
    lab[0, 9, 9] = 2
    out = largest_component_per_class(lab, 3)
    assert (out == 1).sum() == 27 and (out == 2).sum() == 36 and out[6, 6, 6] == 0 and out[0, 9, 9] == 0


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_binary_prediction_thresholds_sigmoid_and_keeps_the_main_blob(mode: str) -> None:
    shape = (30, 26, 14)
    image = np.full(shape, -1.0, np.float32)
    image[5:20, 5:20, 3:11] = 1.0  # the object
    image[25:28, 22:25, 1:3] = 1.0  # a small separate blob, removed by LCC
    model = ScaledInput().train()
    mask, prob = predict_volume(model, image, (16, 16, 8), mode=mode)
    assert model.training  # mode restored
    assert mask.dtype == np.uint8 and prob.dtype == np.float32
    assert mask.shape == shape and prob.shape == shape
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-10 * image)), atol=1e-5)
    expected = np.zeros(shape, np.uint8)
    expected[5:20, 5:20, 3:11] = 1
    np.testing.assert_array_equal(mask, expected)
    mask_no_lcc, _ = predict_volume(model, image, (16, 16, 8), mode=mode, lcc=False)
    assert mask_no_lcc.sum() == expected.sum() + 18


def test_multiclass_prediction_uses_softmax_and_argmax() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 18, 10), np.uint8)
    labels[2:9, 2:9, 2:8] = 1
    labels[11:18, 9:16, 2:8] = 2
    image = labels.astype(np.float32) + rng.normal(0, 0.1, labels.shape).astype(np.float32)
    mask, prob = predict_volume(ScaledInput(3), image, (16, 16, 8), mode="fast")
    assert prob.shape == (3, *labels.shape)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(mask, labels)


def test_flip_tta_averages_the_eight_flips() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 1, 3, padding=1), nn.Conv3d(1, 1, 3, padding=1)).eval()
    shape = (16, 16, 8)  # one window: the TTA average can be written out directly
    image = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    _, prob = predict_volume(net, image, shape, tta=True, lcc=False)
    x = torch.from_numpy(image)[None, None]
    total = torch.zeros_like(x)
    flips = [d for r in range(4) for d in itertools.combinations((2, 3, 4), r)]
    assert len(flips) == 8
    with torch.no_grad():
        for dims in flips:
            total += torch.flip(torch.sigmoid(net(torch.flip(x, dims))), dims)
    np.testing.assert_allclose(prob, (total / 8)[0, 0].numpy(), atol=1e-6)
    _, plain = predict_volume(net, image, shape, tta=False, lcc=False)
    assert not np.allclose(plain, prob, atol=1e-4)


def test_channel_first_images_and_bad_shapes() -> None:
    net = ScaledInput()
    image = np.zeros((1, 8, 8, 8), np.float32)
    mask, _ = predict_volume(net, image, (8, 8, 8))
    assert mask.shape == (8, 8, 8)
    with pytest.raises(CanetError, match=r"got shape \(8, 8\)"):
        predict_volume(net, np.zeros((8, 8), np.float32), (8, 8, 8))


def _gaussian(patch) -> np.ndarray:
    """The documented importance map: sigma = patch / 8 per axis, peak 1, floored at 1e-6."""
    out = np.ones(patch)
    for axis, p in enumerate(patch):
        g = np.exp(-0.5 * ((np.arange(p) - (p - 1) / 2) / (p / 8)) ** 2)
        out = out * g.reshape([p if a == axis else 1 for a in range(3)])
    return np.maximum(out / out.max(), 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["gaussian", "constant"])
def test_real_vnet_on_a_small_volume_is_the_weighted_window_average(weighting: str) -> None:
    """predict_volume against the window average written out by hand for a 40 x 36 x 20 volume."""
    from scipy.ndimage import generate_binary_structure, label

    from canet.models import create_model

    torch.manual_seed(0)
    model = create_model("vnet", n_filters=2).eval()
    image = np.random.default_rng(0).standard_normal((40, 36, 20)).astype(np.float32)
    patch = (32, 32, 16)
    # fast mode, overlap 0.5: steps 16/16/8 -> ceil(8/16)+1, ceil(4/16)+1, ceil(4/8)+1 = 2 windows per
    # axis, spread between the borders
    starts = ([0, 8], [0, 4], [0, 4])
    weight = _gaussian(patch) if weighting == "gaussian" else np.ones(patch)
    total = np.zeros(image.shape)
    norm = np.zeros(image.shape)
    with torch.no_grad():
        for x in starts[0]:
            for y in starts[1]:
                for z in starts[2]:
                    crop = image[x : x + 32, y : y + 32, z : z + 16]
                    logits = model(torch.from_numpy(np.ascontiguousarray(crop))[None, None]).seg[0, 0].numpy()
                    total[x : x + 32, y : y + 32, z : z + 16] += weight / (1 + np.exp(-logits.astype(np.float64)))
                    norm[x : x + 32, y : y + 32, z : z + 16] += weight
    expected_prob = total / norm
    mask, prob = predict_volume(model, image, patch, mode="fast", weighting=weighting, sw_batch_size=3)
    np.testing.assert_allclose(prob, expected_prob, atol=2e-6)
    comps, n = label(expected_prob > 0.5, structure=generate_binary_structure(3, 3))
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    np.testing.assert_array_equal(mask, (comps == np.argmax(sizes)).astype(np.uint8))
    assert n >= 1 and mask.dtype == np.uint8


def test_channels_last_gives_the_same_probabilities_and_restores_the_layout() -> None:
    from canet.models import create_model

    torch.manual_seed(0)
    model = create_model("vnet", n_filters=4).eval()
    image = np.random.default_rng(0).normal(size=(40, 36, 20)).astype(np.float32)
    _, plain = predict_volume(model, image, (32, 32, 16), mode="fast", channels_last=False)
    _, fast = predict_volume(model, image, (32, 32, 16), mode="fast", channels_last=True)
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    weight = next(p for p in model.parameters() if p.dim() == 5)
    assert weight.is_contiguous()
