"""Reorientation: stored voxel order <-> a named orientation, exact round trips, same world positions."""

from __future__ import annotations

import numpy as np
import pytest

from canet.data.orientation import axcodes_of, check_axcodes, reorientation
from canet.errors import DataError

# axis 0 -> posterior (-y), axis 1 -> left (-x), axis 2 -> superior; spacing 0.7, 0.8, 1.5
LPS_LIKE = np.array([
    [0.0, -0.8, 0.0, 40.0],
    [-0.7, 0.0, 0.0, 30.0],
    [0.0, 0.0, 1.5, -20.0],
    [0.0, 0.0, 0.0, 1.0],
])


def test_axis_codes() -> None:
    assert axcodes_of(np.eye(4)) == "RAS"
    assert axcodes_of(LPS_LIKE) == "PLS"
    assert check_axcodes(("l", "p", "s")) == "LPS"
    for bad in ("RAR", "RA", "XYZ", "RLS"):
        with pytest.raises(DataError, match="three axis codes"):
            check_axcodes(bad)


def test_reorientation_keeps_every_voxel_at_its_world_position() -> None:
    shape = (5, 4, 3)
    stored = np.arange(60, dtype=np.float32).reshape(shape)
    r = reorientation(LPS_LIKE, shape, "RAS")
    assert r.source == "PLS" and r.target == "RAS" and not r.identity
    out = r.forward(stored)
    # axis 1 (left) becomes axis 0 flipped (right); axis 0 (posterior) becomes axis 1 flipped
    np.testing.assert_array_equal(out, np.flip(np.flip(stored, 0), 1).transpose(1, 0, 2))
    assert out.shape == (4, 5, 3)
    assert axcodes_of(r.affine) == "RAS" and r.spacing == pytest.approx((0.8, 0.7, 1.5))
    inv = np.linalg.inv(LPS_LIKE)
    for ijk in [(0, 0, 0), (3, 1, 2), (1, 4, 0)]:
        world = r.affine @ np.array([*ijk, 1.0])
        src = np.rint(inv @ world)[:3].astype(int)
        assert out[ijk] == stored[tuple(src)]
    np.testing.assert_array_equal(r.backward(out), stored)
    probs = np.stack([stored, -stored])  # K x X x Y x Z: the channel axis stays in front
    np.testing.assert_array_equal(r.forward(probs), np.stack([out, -out]))
    np.testing.assert_array_equal(r.backward(r.forward(probs)), probs)


def test_same_orientation_is_the_identity() -> None:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [5.0, -7.0, 1.0]
    r = reorientation(affine, (4, 5, 6), "RAS")
    assert r.identity and r.source == r.target == "RAS"
    np.testing.assert_array_equal(r.to_target, [[0, 1], [1, 1], [2, 1]])  # no axis moved, none flipped
    np.testing.assert_array_equal(r.affine, affine)
    a = np.random.default_rng(0).random((4, 5, 6))
    np.testing.assert_array_equal(r.forward(a), a)
    np.testing.assert_array_equal(r.backward(a), a)
    assert r.spacing == (2.0, 2.0, 3.0)


def test_training_data_record(tmp_path, synth_root) -> None:
    import json

    import nibabel as nib

    from canet.data import open_dataset
    from canet.data.preprocessing import describe_training_data

    assert describe_training_data(open_dataset(synth_root)) == {
        "normalize": "zscore", "orientation": None, "spacing": None, "lcc": True, "dataset": "la",
    }
    img = np.zeros((6, 5, 4), np.float32)
    img[1, 1, 1] = 1.0
    affines = {
        "a": np.diag([0.8, 0.9, 2.0, 1.0]),
        "b": np.diag([1.0, 1.1, 2.0, 1.0]),
        "c": np.diag([0.9, 1.0, 3.0, 1.0]),
        # the same RAS voxel sizes 0.6 / 0.7 / 2.5 stored as P, L, S (axes 0 and 1 swapped and flipped)
        "d": np.array([[0, -0.7, 0, 0], [-0.6, 0, 0, 0], [0, 0, 2.5, 0], [0, 0, 0, 1.0]]),
    }
    for name, affine in affines.items():
        nib.save(nib.Nifti1Image(img, affine), str(tmp_path / f"{name}.nii.gz"))
    path = tmp_path / "d.json"
    path.write_text(json.dumps({
        "normalize": False, "postprocess": {"lcc": True},
        "training": [{"image": "a.nii.gz", "label": "a.nii.gz"}, {"image": "b.nii.gz", "label": "b.nii.gz"}],
        "unlabeled": ["c.nii.gz", "d.nii.gz"],
    }))
    record = describe_training_data(open_dataset(path))
    assert record["orientation"] == "RAS" and record["normalize"] == "none" and record["lcc"] is True
    # medians of x (0.8, 1.0, 0.9, 0.7), y (0.9, 1.1, 1.0, 0.6), z (2, 2, 3, 2.5)
    assert record["spacing"] == pytest.approx([0.85, 0.95, 2.25])
    assert record["dataset"] == "datalist"
