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
    r = reorientation(np.diag([2.0, 2.0, 3.0, 1.0]), (4, 4, 4), "RAS")
    assert r.identity
    a = np.random.default_rng(0).random((4, 4, 4))
    assert r.forward(a) is not None and np.array_equal(r.forward(a), a)
