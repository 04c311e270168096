"""Augmentation: rot90 + flip in x-y, random crop with zero padding, image and label kept aligned."""

from __future__ import annotations

import numpy as np
import pytest

from canet.data.augment import augment_pair, check_patch_size, crop_with_padding, rot_flip
from canet.errors import DataError


def _coded_volume(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image whose every voxel holds a unique positive value; label a function of that value."""
    image = (np.arange(int(np.prod(shape)), dtype=np.float32) + 1).reshape(shape)
    label = (image.astype(np.int64) % 5).astype(np.uint8)
    return image, label


def _locate(patch: np.ndarray, image: np.ndarray) -> tuple[int, int, tuple[int, ...]]:
    """The (k, axis, start) for which ``patch`` is a crop of ``rot_flip(image, k, axis)``."""
    value = patch[0, 0, 0]
    for k in range(4):
        for axis in range(2):
            view = rot_flip(image, k, axis)
            where = np.argwhere(view == value)
            if len(where):
                start = tuple(int(v) for v in where[0])
                block = view[tuple(slice(s, s + p) for s, p in zip(start, patch.shape))]
                if block.shape == patch.shape and np.array_equal(block, patch):
                    return k, axis, start
    raise AssertionError("patch is not a crop of any rot90/flip of the volume")


def test_image_and_label_stay_aligned_and_patch_is_a_true_crop() -> None:
    image, label = _coded_volume((30, 22, 14))
    seen = set()
    for seed in range(40):
        img_p, lab_p = augment_pair(image, label, (12, 10, 8), np.random.default_rng(seed))
        assert img_p.shape == lab_p.shape == (12, 10, 8)  # type: ignore[union-attr]
        assert img_p.flags.c_contiguous and lab_p.flags.c_contiguous  # type: ignore[union-attr]
        assert img_p.dtype == np.float32 and lab_p.dtype == np.uint8  # type: ignore[union-attr]
        np.testing.assert_array_equal(lab_p, (img_p.astype(np.int64) % 5).astype(np.uint8))
        k, axis, start = _locate(img_p, image)
        # the draws are k, axis, then the crop starts, from the given generator
        rng = np.random.default_rng(seed)
        drawn = rot_flip(image, int(rng.integers(0, 4)), int(rng.integers(0, 2)))
        np.testing.assert_array_equal(drawn, rot_flip(image, k, axis))
        seen.add((k, axis))
        view_shape = drawn.shape
        assert all(0 <= s <= n - p for s, n, p in zip(start, view_shape, (12, 10, 8)))
    # rot90 (4) x flip along x or y (2) gives the 4 mirror images of the x-y dihedral group
    # (flip_x . rot_k == flip_y . rot_(k+2)); as in the paper's code the flip is always applied
    assert len(seen) == 4
    assert not any(np.array_equal(rot_flip(image, k, a), image) for k, a in seen)


def test_smaller_volume_is_zero_padded_centred() -> None:
    image, label = _coded_volume((10, 30, 6))
    img_p, lab_p = augment_pair(image, label, (16, 16, 10), np.random.default_rng(0), rotate_flip=False)
    # x: 10 -> 16, pad 3 before; z: 6 -> 10, pad 2 before; y: a random crop of 30
    assert np.all(img_p[:3] == 0) and np.all(img_p[13:] == 0)
    assert np.all(img_p[:, :, :2] == 0) and np.all(img_p[:, :, 8:] == 0)
    inner = img_p[3:13, :, 2:8]
    assert np.all(inner > 0)
    y0 = int(np.argwhere(image[0, :, 0] == inner[0, 0, 0])[0, 0])
    np.testing.assert_array_equal(inner, image[:, y0 : y0 + 16, :])
    np.testing.assert_array_equal(lab_p[3:13, :, 2:8], label[:, y0 : y0 + 16, :])
    assert np.all(lab_p[:3] == 0)


def test_same_generator_state_same_patch_and_unlabeled_draws_match() -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(size=(25, 25, 12)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    a = augment_pair(image, label, (16, 16, 8), np.random.default_rng(7))
    b = augment_pair(image, label, (16, 16, 8), np.random.default_rng(7))
    c = augment_pair(image, label, (16, 16, 8), np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    unlabeled, none = augment_pair(image, None, (16, 16, 8), np.random.default_rng(7))
    assert none is None
    np.testing.assert_array_equal(unlabeled, a[0])


def test_crop_with_padding_bounds() -> None:
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) + 1
    out = crop_with_padding(arr, (-1, 1, 2), (3, 3, 3), fill=0)
    expected = np.zeros((3, 3, 3), np.int32)
    expected[1:3, 0:2, 0:2] = arr[0:2, 1:3, 2:4]
    np.testing.assert_array_equal(out, expected)
    assert np.all(crop_with_padding(arr, (5, 0, 0), (2, 2, 2), fill=-1) == -1)


@pytest.mark.parametrize("bad", [(0, 8, 8), (8, 8), (8.0, 8, 8), (True, 8, 8), "abc", 7])
def test_bad_patch_sizes(bad) -> None:
    with pytest.raises(DataError, match="patch_size must be three positive integers"):
        check_patch_size(bad)


def test_label_shape_must_match() -> None:
    with pytest.raises(DataError, match=r"label shape \(4, 4, 3\) differs from image shape \(4, 4, 4\)"):
        augment_pair(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)), (2, 2, 2), np.random.default_rng(0))
