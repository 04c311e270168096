"""Sliding-window inference: identity property, window positions, the literature's loop, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from canet.errors import CanetError
from canet.inferers import gaussian_weights, sliding_window_inference, window_starts

PATCH = (16, 12, 8)
SHAPES = [
    (9, 7, 5),  # smaller than the patch on every axis
    (16, 12, 8),  # equal
    (37, 29, 19),  # larger
    (10, 30, 8),  # mixed: smaller, larger, equal
]


@pytest.mark.parametrize("mode", ["reference", "fast"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weighting", ["gaussian", "constant"])
def test_plus_one_predictor_gives_plus_one(mode: str, shape, weighting: str) -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, *shape, generator=g)
    out = sliding_window_inference(
        image, lambda w: w + 1, PATCH, mode=mode, weighting=weighting, sw_batch_size=3,
        strides=(5, 4, 3),
    )
    assert out.shape == image.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, image + 1, atol=1e-5, rtol=0)


def test_reference_starts_follow_the_literature() -> None:
    # 194 x 142 x 88 with 112 x 112 x 80 patches and strides 18/18/4
    assert window_starts(194, 112, "reference", stride=18) == [0, 18, 36, 54, 72, 82]
    assert window_starts(142, 112, "reference", stride=18) == [0, 18, 30]
    assert window_starts(88, 80, "reference", stride=4) == [0, 4, 8]
    assert window_starts(112, 112, "reference", stride=18) == [0]
    for size in range(112, 260, 7):
        starts = window_starts(size, 112, "reference", stride=18)
        assert len(starts) == math.ceil((size - 112) / 18) + 1
        assert starts[-1] == size - 112


def test_fast_starts_cover_evenly_with_the_overlap() -> None:
    for size in range(20, 200, 11):
        for overlap in (0.0, 0.25, 0.5, 0.75):
            starts = window_starts(size, 20, "fast", overlap=overlap)
            assert starts[0] == 0 and starts[-1] == size - 20
            gaps = np.diff(starts)
            assert np.all(gaps <= max(1, int(20 * (1 - overlap)))), (size, overlap, starts)
            if len(gaps):
                assert gaps.max() - gaps.min() <= 1  # evenly spread
    assert window_starts(194, 112, "fast", overlap=0.5) == [0, 41, 82]


def _coordinate_image(shape) -> torch.Tensor:
    """Channels hold 1 + x, 1 + y and 1 + z, so a window's corner value says where it is."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) + 1 for s in shape], indexing="ij")
    return torch.stack(grids)[None]


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_windows_visited_are_the_expected_ones(mode: str) -> None:
    shape, patch, strides = (41, 30, 13), (16, 12, 8), (5, 6, 2)
    seen: list[tuple[int, int, int]] = []

    def record(w: torch.Tensor) -> torch.Tensor:
        for b in range(w.shape[0]):
            seen.append(tuple(int(w[b, c, 0, 0, 0].item()) - 1 for c in range(3)))
        return w

    sliding_window_inference(_coordinate_image(shape), record, patch, mode=mode, strides=strides, sw_batch_size=4)
    if mode == "reference":
        starts = [window_starts(s, p, "reference", stride=st) for s, p, st in zip(shape, patch, strides)]
    else:
        starts = [window_starts(s, p, "fast", overlap=0.5) for s, p in zip(shape, patch)]
    expected = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]]
    assert seen == expected


def test_small_volume_is_padded_in_the_middle_with_zeros() -> None:
    shape, patch = (5, 12, 3), (8, 12, 8)
    seen: list[torch.Tensor] = []

    def record(w: torch.Tensor) -> torch.Tensor:
        seen.append(w.clone())
        return w

    out = sliding_window_inference(_coordinate_image(shape), record, patch, mode="reference")
    assert len(seen) == 1
    w = seen[0][0, 0]  # the x channel
    # x: pad 3 -> 1 before, 2 after; z: pad 5 -> 2 before, 3 after
    assert torch.all(w[0] == 0) and torch.all(w[-2:] == 0)
    assert torch.all(w[1:6, :, :2] == 0) and torch.all(w[1:6, :, 5:] == 0)
    assert torch.equal(w[1:6, :, 2:5], _coordinate_image(shape)[0, 0])
    assert out.shape == (1, 3, *shape)


def _literature_loop(image: np.ndarray, net: nn.Module, patch, stride_xy: int, stride_z: int) -> np.ndarray:
    """The LA papers' test loop, written out independently with numpy (one channel in, K out)."""
    w, h, d = image.shape
    pads = [max(p - s, 0) for s, p in zip(image.shape, patch)]
    lo = [p // 2 for p in pads]
    img = np.pad(image, [(a, p - a) for a, p in zip(lo, pads)], mode="constant", constant_values=0)
    ww, hh, dd = img.shape
    sx = math.ceil((ww - patch[0]) / stride_xy) + 1
    sy = math.ceil((hh - patch[1]) / stride_xy) + 1
    sz = math.ceil((dd - patch[2]) / stride_z) + 1
    score = None
    cnt = np.zeros(img.shape, np.float32)
    for x in range(sx):
        xs = min(stride_xy * x, ww - patch[0])
        for y in range(sy):
            ys = min(stride_xy * y, hh - patch[1])
            for z in range(sz):
                zs = min(stride_z * z, dd - patch[2])
                crop = img[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]]
                with torch.no_grad():
                    y1 = net(torch.from_numpy(np.ascontiguousarray(crop))[None, None].float())[0].numpy()
                if score is None:
                    score = np.zeros((y1.shape[0], *img.shape), np.float32)
                score[:, xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += y1
                cnt[xs : xs + patch[0], ys : ys + patch[1], zs : zs + patch[2]] += 1
    score = score / cnt[None]
    return score[:, lo[0] : lo[0] + w, lo[1] : lo[1] + h, lo[2] : lo[2] + d]


@pytest.mark.parametrize("shape", [(30, 21, 11), (10, 14, 9)])
def test_reference_mode_equals_the_literature_loop_on_a_real_network(shape) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 2, 3, padding=1), nn.Softmax(dim=1)).eval()
    image = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    patch = (16, 12, 8)
    expected = _literature_loop(image, net, patch, stride_xy=6, stride_z=2)
    got = sliding_window_inference(
        torch.from_numpy(image)[None, None], net, patch, mode="reference", strides=(6, 6, 2), sw_batch_size=5
    )[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_gaussian_weights() -> None:
    w = gaussian_weights((16, 12, 9))
    assert w.shape == (16, 12, 9) and float(w.max()) == pytest.approx(1.0)
    assert float(w.min()) > 0
    torch.testing.assert_close(w, torch.flip(w, dims=(0, 1, 2)))
    # sigma = patch / 8: one sigma from the centre along x the weight is exp(-1/2) of the peak
    w1 = gaussian_weights((17, 1, 1))[:, 0, 0]
    assert float(w1[8]) == pytest.approx(1.0)
    sigma = 17 / 8  # the centre is index 8
    assert float(w1[10]) == pytest.approx(math.exp(-0.5 * (2 / sigma) ** 2), rel=1e-5)


def test_batching_does_not_change_the_result_and_gaussian_differs_from_constant() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.Sigmoid()).eval()
    image = torch.randn(1, 1, 30, 20, 12)
    a = sliding_window_inference(image, net, (16, 12, 8), sw_batch_size=1)
    b = sliding_window_inference(image, net, (16, 12, 8), sw_batch_size=7)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    c = sliding_window_inference(image, net, (16, 12, 8), weighting="constant")
    assert not torch.allclose(a, c, atol=1e-4)  # zero padding at window borders makes them differ


def test_bad_arguments_raise_canet_errors() -> None:
    image = torch.zeros(1, 1, 8, 8, 8)
    ident = lambda w: w  # noqa: E731
    with pytest.raises(CanetError, match="overlap must be in \\[0, 1\\), got 1.0"):
        sliding_window_inference(image, ident, (4, 4, 4), overlap=1.0)
    with pytest.raises(CanetError, match="mode must be one of"):
        sliding_window_inference(image, ident, (4, 4, 4), mode="slow")
    with pytest.raises(CanetError, match="weighting must be one of"):
        sliding_window_inference(image, ident, (4, 4, 4), weighting="tent")
    with pytest.raises(CanetError, match="B x C x X x Y x Z"):
        sliding_window_inference(torch.zeros(8, 8, 8), ident, (4, 4, 4))
    with pytest.raises(CanetError, match="patch_size must be three positive integers"):
        sliding_window_inference(image, ident, (4, 4))
    with pytest.raises(CanetError, match="sw_batch_size"):
        sliding_window_inference(image, ident, (4, 4, 4), sw_batch_size=0)
    with pytest.raises(ValueError, match="predictor returned shape"):
        sliding_window_inference(image, lambda w: w[:, :, :2], (4, 4, 4))


def test_every_voxel_is_covered_for_any_patch_stride_and_size() -> None:
    """Strides larger than the patch are clamped to it: no voxel is left without a window.

    A random sweep (fixed seed) over patch sizes, strides up to three patches and
    volume sizes from below the patch to several patches, in both modes.
    """
    rng = np.random.default_rng(2024)
    for _ in range(60):
        patch = tuple(int(v) for v in rng.integers(1, 9, 3))
        strides = tuple(int(v) for v in rng.integers(1, 3 * 9, 3))
        shape = tuple(int(v) for v in rng.integers(1, 30, 3))
        for axis in range(3):
            for mode in ("reference", "fast"):
                starts = window_starts(
                    max(shape[axis], patch[axis]), patch[axis], mode, stride=strides[axis],
                    overlap=float(rng.choice([0.0, 0.5, 0.9])),
                )
                covered = np.zeros(max(shape[axis], patch[axis]), bool)
                for s in starts:
                    covered[s : s + patch[axis]] = True
                assert covered.all(), (mode, shape[axis], patch[axis], strides[axis], starts)
        image = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(1))
        out = sliding_window_inference(image, lambda w: w + 1, patch, mode="reference", strides=strides)
        assert bool(torch.isfinite(out).all()), (shape, patch, strides)
        torch.testing.assert_close(out, image + 1, atol=1e-5, rtol=0)


def test_stride_above_the_patch_is_clamped_to_the_patch() -> None:
    # 40 voxels, patch 16, stride 30: without the clamp windows start at 0 and 24
    # (voxels 16..23 uncovered); clamped to 16 they start at 0, 16, 24.
    assert window_starts(40, 16, "reference", stride=30) == [0, 16, 24]
    out = sliding_window_inference(
        torch.zeros(1, 1, 40, 40, 40), lambda w: w + 1, (16, 16, 16), mode="reference", strides=(30, 30, 30)
    )
    assert int(torch.isnan(out).sum()) == 0 and float(out.min()) == 1.0
