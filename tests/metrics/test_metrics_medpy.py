"""canet.metrics against medpy.metric.binary itself: random shapes, spacing, real LA cases."""

from __future__ import annotations

import math
import time

import h5py
import numpy as np
import pytest
from medpy.metric import binary as mb
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

from canet.errors import CanetError
from canet.metrics import asd, binary_metrics, dice, hd95, jaccard, surface_distances

medpy_surface_distances = getattr(mb, "__surface_distances")


def _blob(rng: np.random.Generator, shape: tuple[int, ...], level: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return field > level * field.std()


def _medpy(pred: np.ndarray, gt: np.ndarray, spacing=None) -> dict[str, float]:
    return {
        "dice": mb.dc(pred, gt),
        "jaccard": mb.jc(pred, gt),
        "hd95": mb.hd95(pred, gt, voxelspacing=spacing),
        "asd": mb.asd(pred, gt, voxelspacing=spacing),
    }


CASES = [
    ((20, 24, 18), None),
    ((20, 24, 18), (0.625, 0.625, 0.625)),
    ((17, 30, 12), (0.7, 1.1, 2.5)),
    ((25, 9, 31), (2.0, 0.3, 1.0)),
    ((16, 16, 16), 1.7),  # one number for all axes, as medpy allows
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("shape", "spacing"), CASES)
def test_random_shapes_match_medpy(seed: int, shape: tuple[int, int, int], spacing) -> None:
    rng = np.random.default_rng(seed)
    gt = _blob(rng, shape, 0.3)
    pred = _blob(rng, shape, 0.5 + 0.2 * seed) | (gt & (rng.random(shape) < 0.7))
    assert gt.any() and pred.any()
    ours = binary_metrics(pred, gt, spacing)
    ref = _medpy(pred, gt, spacing)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=0), key
    # the single-metric functions agree with the combined one
    assert dice(pred, gt) == ours["dice"]
    assert jaccard(pred, gt) == ours["jaccard"]
    assert hd95(pred, gt, spacing) == ours["hd95"]
    assert asd(pred, gt, spacing) == ours["asd"]
    # the directed distances are medpy's, element by element, in the same order
    np.testing.assert_allclose(
        surface_distances(pred, gt, spacing), medpy_surface_distances(pred, gt, spacing), atol=1e-9
    )


def test_objects_touching_the_border_and_single_voxels_match_medpy() -> None:
    shape = (12, 10, 8)
    gt = np.zeros(shape, bool)
    gt[:5, :, 2:6] = True  # touches three faces of the array
    pred = np.zeros(shape, bool)
    pred[7, 3, 7] = True  # one voxel in a corner region
    pred[0, 0, 0] = True
    for spacing in (None, (1.0, 2.0, 0.5)):
        ours = binary_metrics(pred, gt, spacing)
        ref = _medpy(pred, gt, spacing)
        for key in ref:
            assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=0), key
    # the whole array as object: its surface is the array's outer layer
    full = np.ones(shape, bool)
    assert binary_metrics(full, gt)["hd95"] == pytest.approx(mb.hd95(full, gt), abs=1e-9)
    assert binary_metrics(full, gt)["asd"] == pytest.approx(mb.asd(full, gt), abs=1e-9)


def test_two_dimensional_masks_match_medpy() -> None:
    rng = np.random.default_rng(3)
    gt = _blob(rng, (40, 33), 0.2)
    pred = _blob(rng, (40, 33), 0.4)
    ours = binary_metrics(pred, gt, (0.5, 1.5))
    ref = _medpy(pred, gt, (0.5, 1.5))
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=0)


def test_identical_masks_give_perfect_scores() -> None:
    rng = np.random.default_rng(0)
    gt = _blob(rng, (20, 20, 20), 0.3)
    assert binary_metrics(gt, gt) == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0}


def test_known_values_of_a_shifted_cube() -> None:
    gt = np.zeros((20, 20, 20), bool)
    gt[5:15, 5:15, 5:15] = True
    pred = np.roll(gt, 2, axis=0)
    m = binary_metrics(pred, gt)
    assert m["dice"] == pytest.approx(2 * 800 / 2000)
    assert m["jaccard"] == pytest.approx(800 / 1200)
    # with spacing 3 mm along x every distance along x triples
    m3 = binary_metrics(pred, gt, (3.0, 1.0, 1.0))
    assert m3["hd95"] == pytest.approx(mb.hd95(pred, gt, (3.0, 1.0, 1.0)))
    assert m3["hd95"] > m["hd95"]


def test_empty_mask_policy() -> None:
    gt = np.zeros((8, 8, 8), bool)
    gt[2:5, 2:5, 2:5] = True
    empty = np.zeros_like(gt)
    one_empty = binary_metrics(empty, gt)
    assert one_empty["dice"] == 0.0 and one_empty["jaccard"] == 0.0
    assert math.isnan(one_empty["hd95"]) and math.isnan(one_empty["asd"])
    other_empty = binary_metrics(gt, empty)
    assert math.isnan(other_empty["hd95"]) and math.isnan(other_empty["asd"])
    both = binary_metrics(empty, empty)
    # nothing to overlap: every metric is NaN (left out of means and counted), never 1 or 0
    assert all(math.isnan(v) for v in both.values()), both
    assert math.isnan(dice(empty, empty)) and math.isnan(jaccard(empty, empty))
    with np.errstate(invalid="ignore"):
        assert math.isnan(mb.dc(empty, empty))  # medpy's Dice agrees (0 / 0)
    assert math.isnan(hd95(empty, gt)) and math.isnan(asd(gt, empty))
    assert surface_distances(empty, gt).size == 0
    # medpy itself refuses: we never fall back to 0
    with pytest.raises(RuntimeError):
        mb.hd95(empty, gt)


def test_bad_inputs_raise_one_line_errors() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 5), bool)
    with pytest.raises(CanetError, match=r"differ in shape: \(4, 4, 4\) vs \(4, 4, 5\)"):
        dice(a, b)
    a[1, 1, 1] = True
    with pytest.raises(CanetError, match="spacing must have 3 values"):
        hd95(a, a, (1.0, 2.0))
    with pytest.raises(CanetError, match="positive and finite"):
        asd(a, a, (1.0, 0.0, 1.0))


def _la_case(root, case_id: str) -> np.ndarray:
    with h5py.File(root / "2018LA_Seg_Training Set" / case_id / "mri_norm2.h5", "r") as f:
        return f["label"][:].astype(bool)


@pytest.mark.real_data
def test_real_la_cases_match_medpy_and_are_fast(la_root) -> None:
    ids = [line.strip() for line in (la_root / "test.list").read_text().splitlines() if line.strip()][:2]
    rng = np.random.default_rng(0)
    for k, case_id in enumerate(ids):
        gt = _la_case(la_root, case_id)
        # a plausible imperfect prediction: grown on one half, shrunk and shifted on the other
        pred = binary_dilation(gt, iterations=2)
        half = gt.shape[2] // 2
        pred[:, :, :half] = np.roll(binary_erosion(gt, iterations=3), 2, axis=0)[:, :, :half]
        pred |= rng.random(gt.shape) < 1e-5  # scattered false positives far away
        spacing = None if k == 0 else (0.625, 0.625, 0.625)
        start = time.perf_counter()
        ours = binary_metrics(pred, gt, spacing)
        seconds = time.perf_counter() - start
        ref = _medpy(pred, gt, spacing)
        for key in ref:
            assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=0), (case_id, key)
        assert seconds <= 0.5, f"binary_metrics took {seconds:.3f} s on {gt.shape}"
