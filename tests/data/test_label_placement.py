"""Labels and images whose files place them differently: read from each file's own affine, or refused.

A label may be stored in another voxel order than its image (flipped or permuted,
with an affine that says so): it is the same grid in world space and must be
read in the image's order. A label on another grid (shifted, other voxel size)
cannot be compared voxel by voxel and is refused in one line. Also: NaN voxels,
and oblique affines going to the closest orientation.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, ornt_transform

from canet.data import Case, check_dataset, fill_nonfinite, load_case
from canet.data.check import check_before_training
from canet.data.orientation import grid_transform, placement_gap, reorientation, to_grid
from canet.errors import DataError

AFFINE = np.array([
    [0.8, 0.0, 0.0, -12.0],
    [0.0, 0.9, 0.0, 30.0],
    [0.0, 0.0, 1.5, 5.0],
    [0.0, 0.0, 0.0, 1.0],
])


def _case_arrays(shape=(14, 12, 8)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[2:7, 3:10, 1:4] = 1  # asymmetric along every axis
    label[9:12, 1:3, 5:7] = 1
    image[label > 0] += 50.0
    return image, label


def _stored_as(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same grid stored in the voxel order ``codes`` (flips and transposes, affine to match)."""
    turn = ornt_transform(axcodes2ornt(tuple(nib.aff2axcodes(img.affine))), axcodes2ornt(tuple(codes)))
    return img.as_reoriented(turn)


@pytest.mark.parametrize("codes", ["LAS", "PSL", "ILP"])
def test_a_label_stored_in_another_voxel_order_is_read_in_the_images(tmp_path: Path, codes: str) -> None:
    image, label = _case_arrays()
    nib.save(nib.Nifti1Image(image, AFFINE), str(tmp_path / "img.nii.gz"))
    other = _stored_as(nib.Nifti1Image(label, AFFINE), codes)
    assert "".join(nib.aff2axcodes(other.affine)) == codes
    assert not np.array_equal(np.asarray(other.dataobj).shape, label.shape) or codes == "LAS"
    nib.save(other, str(tmp_path / "lab.nii.gz"))
    vol = load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"))
    np.testing.assert_array_equal(vol.label, label)
    np.testing.assert_allclose(vol.affine, AFFINE)


def test_a_label_on_another_grid_is_refused_in_one_line_and_named_by_check_data(tmp_path: Path) -> None:
    image, label = _case_arrays()
    nib.save(nib.Nifti1Image(image, AFFINE), str(tmp_path / "img.nii.gz"))
    shifted = AFFINE.copy()
    shifted[0, 3] += 2 * 0.8  # two voxels along x
    nib.save(nib.Nifti1Image(label, shifted), str(tmp_path / "shifted.nii.gz"))
    coarse = np.diag([1.6, 0.9, 1.5, 1.0])
    nib.save(nib.Nifti1Image(label[::2], coarse), str(tmp_path / "coarse.nii.gz"))
    with pytest.raises(DataError) as info:
        load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "shifted.nii.gz"))
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{tmp_path / 'shifted.nii.gz'}: the label is not on the grid of its image img.nii.gz (its affine "
        "places a corner 1.6 mm away from the image's); resample it onto the image"
    )
    with pytest.raises(DataError, match=r"shape \(7, 12, 8\) in RAS order does not match the image's \(14, 12, 8\)"):
        load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "coarse.nii.gz"))

    # check-data names the case; the trainer's start-up check refuses in one line
    _, flipped_label = _case_arrays()
    nib.save(_stored_as(nib.Nifti1Image(flipped_label, AFFINE), "LPS"), str(tmp_path / "flipped.nii.gz"))
    datalist = tmp_path / "data.json"
    datalist.write_text(json.dumps({"training": [
        {"image": "img.nii.gz", "label": "flipped.nii.gz", "id": "fine"},
        {"image": "img.nii.gz", "label": "shifted.nii.gz", "id": "bad"},
    ]}))
    report = check_dataset(datalist)
    assert report.problems == [message]
    with pytest.raises(DataError, match="1 problem.*shifted.nii.gz: the label is not on the grid"):
        check_before_training(datalist, log=lambda m: None)


def test_unoriented_files_are_compared_in_stored_order(tmp_path: Path) -> None:
    """A label whose file states no orientation is taken in the image's order (only the shape can be checked)."""
    image, label = _case_arrays()
    nib.save(nib.Nifti1Image(image, AFFINE), str(tmp_path / "img.nii.gz"))
    bare = nib.Nifti1Image(label, None)
    bare.header.set_sform(None, code=0)
    bare.header.set_qform(None, code=0)
    nib.save(bare, str(tmp_path / "bare.nii.gz"))
    np.testing.assert_array_equal(load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "bare.nii.gz")).label, label)
    nib.save(bare.__class__(label[:, :, :-1], None), str(tmp_path / "short.nii.gz"))
    img = nib.load(str(tmp_path / "short.nii.gz"))
    assert int(img.header["sform_code"]) == 0 and int(img.header["qform_code"]) == 0
    with pytest.raises(DataError, match=r"label shape \(14, 12, 7\) differs from image shape \(14, 12, 8\)"):
        load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "short.nii.gz"))
    # check-data says that such a pair is taken on trust; a pair that both state, or neither, is not named
    nib.save(nib.Nifti1Image(image, None), str(tmp_path / "bare_img.nii.gz"))
    nib.save(nib.Nifti1Image(label, AFFINE), str(tmp_path / "lab.nii.gz"))
    datalist = tmp_path / "data.json"
    datalist.write_text(json.dumps({"training": [
        {"image": "img.nii.gz", "label": "bare.nii.gz", "id": "one_sided"},
        {"image": "img.nii.gz", "label": "lab.nii.gz", "id": "both"},
        {"image": "bare_img.nii.gz", "label": "bare.nii.gz", "id": "neither"},
    ]}))
    report = check_dataset(datalist)
    assert report.problems == []
    assert [w for w in report.warnings if "orientation" in w] == [
        f"{tmp_path / 'bare.nii.gz'}: its image states an orientation and its label does not, so the label is "
        "taken in the image's stored voxel order: check that they overlay"
    ]


def test_nan_voxels_are_set_to_the_scans_minimum_and_counted(tmp_path: Path) -> None:
    image = np.array([[[3.0, np.nan], [-2.0, 5.0]], [[np.inf, 1.0], [-np.inf, 0.5]]], np.float32)
    filled, count = fill_nonfinite(image)
    assert count == 3
    np.testing.assert_array_equal(filled, [[[3.0, -2.0], [-2.0, 5.0]], [[-2.0, 1.0], [-2.0, 0.5]]])
    clean = np.ones((2, 2, 2), np.float32)
    same, none = fill_nonfinite(clean)
    assert none == 0 and np.array_equal(same, clean)
    with pytest.raises(DataError, match="scan.nii: every voxel of the image is NaN or infinite"):
        fill_nonfinite(np.full((2, 2, 2), np.nan), "scan.nii")

    big, label = _case_arrays()
    big[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(big, AFFINE), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(label, AFFINE), str(tmp_path / "lab.nii.gz"))
    vol = load_case(Case("a", tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"), normalize=True)
    assert vol.nonfinite == 1 and np.isfinite(vol.image).all()
    expected = big.copy()
    expected[0, 0, 0] = np.nanmin(big)
    expected = (expected - expected.mean(dtype=np.float64)) / expected.std(dtype=np.float64)
    np.testing.assert_allclose(vol.image, expected, atol=1e-5)
    assert vol.image[0, 0, 0] == pytest.approx(vol.image.min())  # the darkest voxel


def _rotation_z(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    return out


def test_an_oblique_scan_goes_to_the_closest_orientation() -> None:
    """Tilted by 20 degrees, an L-P-S scan is reoriented like the straight one; voxels keep their world place."""
    straight = np.array([[-0.7, 0, 0, 40.0], [0, -0.8, 0, 30.0], [0, 0, 1.5, -20.0], [0, 0, 0, 1.0]])
    oblique = _rotation_z(20.0) @ straight
    shape = (5, 4, 3)
    stored = np.arange(60, dtype=np.float32).reshape(shape)
    r_oblique = reorientation(oblique, shape, "RAS")
    r_straight = reorientation(straight, shape, "RAS")
    assert r_oblique.source == r_straight.source == "LPS"
    out = r_oblique.forward(stored)
    np.testing.assert_array_equal(out, np.flip(np.flip(stored, 0), 1))  # x and y flipped, nothing transposed
    np.testing.assert_array_equal(r_oblique.backward(out), stored)
    inv = np.linalg.inv(oblique)
    for ijk in [(0, 0, 0), (4, 3, 2), (1, 2, 0)]:
        src = np.rint(inv @ (r_oblique.affine @ np.array([*ijk, 1.0])))[:3].astype(int)
        assert out[ijk] == stored[tuple(src)]
    # an oblique label stored flipped on the oblique image's grid is put back in the image's order
    flip = np.array([[-1.0, 0, 0, shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    label_affine = oblique @ flip  # voxel i of the label lies where voxel 4 - i of the image lies
    assert placement_gap(label_affine, oblique, shape) > 1.0
    moved = to_grid(np.flip(stored, 0), label_affine, oblique, shape)
    assert moved is not None
    np.testing.assert_array_equal(moved, stored)
    assert grid_transform(oblique, shape, _rotation_z(2.0) @ oblique, shape) is None  # a small turn is another grid
