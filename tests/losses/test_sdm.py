"""The signed-distance map against hand-made masks and a brute-force reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from canet.errors import CanetError
from canet.losses import SDMTargets, batch_sdm, compute_sdm, inner_boundary, label_sdm


def brute_force_sdm(mask: np.ndarray) -> np.ndarray:
    """The SDM formula evaluated literally: all pairwise distances, explicit neighbours."""
    m = mask.astype(bool)
    coords = np.argwhere(np.ones_like(m))
    fg = np.argwhere(m)
    bg = np.argwhere(~m)
    d_fg = np.sqrt(((coords[:, None, :] - fg[None, :, :]) ** 2).sum(-1)).min(1)  # to mask
    d_bg = np.sqrt(((coords[:, None, :] - bg[None, :, :]) ** 2).sum(-1)).min(1)  # to background
    d_out = np.where(m.ravel(), 0.0, d_fg).reshape(m.shape)
    d_in = np.where(m.ravel(), d_bg, 0.0).reshape(m.shape)

    def norm(d: np.ndarray) -> np.ndarray:
        return (d - d.min()) / (d.max() - d.min())

    sdm = norm(d_out) - norm(d_in)
    for idx in map(tuple, fg):
        for axis, step in itertools.product(range(3), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if 0 <= nb[axis] < m.shape[axis] and not m[tuple(nb)]:
                sdm[idx] = 0.0
                break
    return sdm


def sphere(shape: tuple[int, int, int], center: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    dist2 = sum((g - c) ** 2 for g, c in zip(grid, center))
    return dist2 <= radius**2


def test_sphere_signs_boundary_and_extremes() -> None:
    mask = sphere((24, 24, 20), (11.5, 11.5, 9.5), 6.0)
    sdm = compute_sdm(mask)
    assert sdm.dtype == np.float32 and sdm.shape == mask.shape
    assert sdm.min() == pytest.approx(-1.0) and sdm.max() == pytest.approx(1.0)
    boundary = inner_boundary(mask)
    assert boundary.any() and np.all(sdm[boundary] == 0)
    assert np.all(sdm[~mask] > 0)
    assert np.all(sdm[mask & ~boundary] < 0)
    # The outside maximum sits at the volume's corners (farthest from the sphere),
    # the inside minimum at the voxels nearest the centre.
    for corner in itertools.product((0, 23), (0, 23), (0, 19)):
        assert sdm[corner] == pytest.approx(1.0)
    centre_values = sdm[11:13, 11:13, 9:11]
    assert np.allclose(centre_values, -1.0)


def test_sphere_matches_brute_force() -> None:
    mask = sphere((14, 13, 12), (6.2, 6.0, 5.4), 4.0)
    np.testing.assert_allclose(compute_sdm(mask), brute_force_sdm(mask), atol=1e-6)


def test_random_blobs_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        mask = rng.random((10, 9, 8)) < 0.35
        np.testing.assert_allclose(compute_sdm(mask), brute_force_sdm(mask), atol=1e-6)


def test_cube_hand_computed_values() -> None:
    mask = np.zeros((9, 9, 9), dtype=np.uint8)
    mask[3:6, 3:6, 3:6] = 1
    sdm = compute_sdm(mask)
    # Only the centre voxel of the 3x3x3 cube is not on the inner boundary; it is the
    # deepest voxel (distance 2 to the background), so it gets -1.
    assert sdm[4, 4, 4] == pytest.approx(-1.0)
    cube = sdm[3:6, 3:6, 3:6].copy()
    cube[1, 1, 1] = 0
    assert np.all(cube == 0)
    far = math.sqrt(27.0)  # every corner is sqrt(3^2 + 3^2 + 3^2) from the cube
    assert sdm[0, 0, 0] == pytest.approx(1.0)
    assert sdm[2, 4, 4] == pytest.approx(1 / far, rel=1e-6)
    assert sdm[0, 4, 4] == pytest.approx(3 / far, rel=1e-6)
    assert sdm[2, 2, 4] == pytest.approx(math.sqrt(2) / far, rel=1e-6)


def test_mask_touching_the_volume_edge() -> None:
    mask = np.zeros((8, 6, 6), dtype=bool)
    mask[:4] = True  # half the volume; the face x = 0 is the volume edge, not a boundary
    sdm = compute_sdm(mask)
    assert np.all(sdm[3] == 0)
    assert np.allclose(sdm[0], -1.0)  # d_in = 4 at x = 0, the largest inside distance
    assert np.allclose(sdm[1], -3 / 4)
    assert np.allclose(sdm[7], 1.0) and np.allclose(sdm[4], 1 / 4)


def test_empty_mask_is_all_zero() -> None:
    sdm = compute_sdm(np.zeros((6, 5, 4), dtype=np.uint8))
    assert sdm.dtype == np.float32 and not sdm.any()


def test_full_mask_treats_the_outside_as_background() -> None:
    sdm = compute_sdm(np.ones((5, 5, 5), dtype=np.uint8))
    assert np.isfinite(sdm).all()
    faces = np.ones((5, 5, 5), dtype=bool)
    faces[1:-1, 1:-1, 1:-1] = False
    assert np.all(sdm[faces] == 0)  # the faces are the boundary
    assert sdm[2, 2, 2] == pytest.approx(-1.0)  # 3 voxels from the outside
    shell = sdm[1:4, 1:4, 1:4].copy()
    shell[1, 1, 1] = -2 / 3
    assert np.allclose(shell, -2 / 3)  # 2 voxels from the outside
    # A full mask that is one voxel thick is all boundary.
    assert not compute_sdm(np.ones((1, 4, 4))).any()


def test_single_voxel_and_bad_input() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[2, 2, 2] = True
    sdm = compute_sdm(mask)
    assert sdm[2, 2, 2] == 0 and np.all(sdm[~mask] > 0)
    with pytest.raises(CanetError, match=r"\(0, 3, 3\)"):
        compute_sdm(np.zeros((0, 3, 3)))


def test_label_and_batch_sdm_channels() -> None:
    label = np.zeros((2, 8, 8, 8), dtype=np.uint8)
    label[0, 2:5, 2:5, 2:5] = 1
    label[1, 1:3, 1:3, 1:3] = 2
    binary = batch_sdm(label)
    assert binary.shape == (2, 1, 8, 8, 8)
    np.testing.assert_array_equal(binary[1, 0], compute_sdm(label[1] > 0))
    multi = batch_sdm(label, num_classes=3)
    assert multi.shape == (2, 3, 8, 8, 8)
    np.testing.assert_array_equal(multi[0, 1], compute_sdm(label[0] == 1))
    assert not multi[0, 2].any()  # class 2 absent from case 0 -> zeros
    np.testing.assert_array_equal(multi[1, 0], compute_sdm(label[1] == 0))
    out = SDMTargets(2)(label[0])
    assert set(out) == {"sdm"}
    np.testing.assert_array_equal(out["sdm"], label_sdm(label[0]))
    import pickle

    assert pickle.loads(pickle.dumps(SDMTargets(3))) == SDMTargets(3)
