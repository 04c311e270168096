"""Headers a user's scans may carry, read and written right by `canet predict` and `evaluate`.

Each expected affine is worked out from the header by hand (the NRRD and NIfTI
rules), not by canet's reader: NRRD ``-time`` frames and non-anatomical
spaces, NIfTI spatial units, degenerate sforms, sources without orientation,
and an output folder that holds the inputs.
"""

from __future__ import annotations

import json

import nibabel as nib
import nrrd
import numpy as np
import pytest

from canet.data import read_volume
from canet.errors import DataError


def _image(shape=(20, 24, 16)) -> np.ndarray:
    return np.random.default_rng(3).standard_normal(shape).astype(np.float32)


def _codes(img) -> tuple[int, int]:
    return int(img.header["sform_code"]), int(img.header["qform_code"])


def test_predict_never_writes_over_an_input(tmp_path, run_cli, checkpoint) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("b.nii.gz", "b_pred.nii.gz"):  # a scan whose name is b's output name
        nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(folder / name))
    before = (folder / "b_pred.nii.gz").read_bytes()
    code, _, err = run_cli("predict", checkpoint, folder, "-o", folder, "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert f"{folder / 'b_pred.nii.gz'} is one of the inputs and would be overwritten by the pred output of 'b'" in err
    assert (folder / "b_pred.nii.gz").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["b.nii.gz", "b_pred.nii.gz"]  # nothing written

    # the probability map's name too, but only when it is asked for
    (folder / "b_pred.nii.gz").rename(folder / "b_prob.nii.gz")
    code, _, err = run_cli("predict", checkpoint, folder, "-o", folder, "--quiet", "--probabilities")
    assert code == 2 and "would be overwritten by the prob output of 'b'" in err
    code, _, err = run_cli("predict", checkpoint, folder / "b.nii.gz", "-o", folder, "--quiet")
    assert code == 0, err  # b_pred.nii.gz is not an input now
    assert (folder / "b_pred.nii.gz").is_file()


def test_predict_leaves_earlier_outputs_in_a_folder_out(tmp_path, run_cli, checkpoint) -> None:
    # a folder segmented before into itself holds b_pred / b_prob; segmenting the folder again into
    # another one used to segment those masks too (b_pred_pred.nii.gz)
    folder = tmp_path / "s"
    folder.mkdir()
    for name in ("b.nii.gz", "b_pred.nii.gz", "b_prob.nii.gz", "c.nii.gz"):
        nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(folder / name))
    code, _, err = run_cli("predict", checkpoint, folder, "-o", tmp_path / "o", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b_pred.nii.gz", "c_pred.nii.gz", "predict.json"]
    assert ("warning: left out 2 file(s) named like canet's outputs (*_pred, *_prob): b_pred.nii.gz, "
            "b_prob.nii.gz; name such a file on its own to segment it") in err
    code, _, err = run_cli("predict", checkpoint, folder / "b_pred.nii.gz", "-o", tmp_path / "o2", "--quiet")
    assert code == 0 and (tmp_path / "o2" / "b_pred_pred.nii.gz").is_file()  # named on its own: taken
    only = tmp_path / "only"
    only.mkdir()
    (folder / "b_pred.nii.gz").rename(only / "b_pred.nii.gz")
    code, _, err = run_cli("predict", checkpoint, only, "-o", tmp_path / "o3", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "(only files named like canet's outputs, *_pred / *_prob, which are left out)" in err


def test_two_inputs_with_one_output_name_are_both_named(tmp_path, run_cli, checkpoint) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(_image(), np.eye(4)), str(tmp_path / folder / "scan.nii.gz"))
    code, _, err = run_cli("predict", checkpoint, tmp_path / "x", tmp_path / "y", "-o", tmp_path / "o", "--quiet")
    assert code == 2 and err == (f"error: two inputs would write the same output name 'scan': "
                                 f"{tmp_path / 'x' / 'scan.nii.gz'} and {tmp_path / 'y' / 'scan.nii.gz'}\n")


@pytest.mark.parametrize(
    ("space", "flips", "oriented"),
    [
        ("left-posterior-superior-time", (-1, -1, 1), True),  # a 4D frame: the same as LPS
        ("right-anterior-superior-time", (1, 1, 1), True),
        ("LPST", (-1, -1, 1), True),  # the short 4D names
        ("LAST", (-1, 1, 1), True),
        ("LPS", (-1, -1, 1), True),
        ("scanner-xyz", (1, 1, 1), False),  # no anatomical meaning: stored voxel order
        ("3D-left-handed", (1, 1, 1), False),
        ("3D-right-handed", (1, 1, 1), False),
    ],
)
def test_nrrd_spaces(tmp_path, space: str, flips: tuple[int, int, int], oriented: bool) -> None:
    image = _image()
    header = {"space": space, "space directions": np.diag([0.7, 1.3, 2.5]), "space origin": np.array([10.0, -20.0, 5.0])}
    if space.endswith("-time") or space.endswith("T"):  # a 4D frame: a fourth world axis and a non-spatial fourth voxel axis
        image = image[..., None]
        header = {"space": space, "kinds": ["domain", "domain", "domain", "list"],
                  "space directions": np.diag([0.7, 1.3, 2.5, 1.0]),
                  "space origin": np.array([10.0, -20.0, 5.0, 0.0])}
    nrrd.write(str(tmp_path / "t.nrrd"), image, header)
    _, geometry = read_volume(tmp_path / "t.nrrd")
    expected = np.diag([0.7 * flips[0], 1.3 * flips[1], 2.5 * flips[2], 1.0])
    expected[:3, 3] = np.array([10.0, -20.0, 5.0]) * flips
    assert geometry.oriented is oriented
    np.testing.assert_allclose(geometry.affine, expected, atol=1e-9)
    assert geometry.spacing == pytest.approx((0.7, 1.3, 2.5)) and geometry.unit == "mm"


def test_predict_a_4d_lps_time_nrrd_is_placed_in_lps(tmp_path, run_cli, checkpoint) -> None:
    header = {"space": "left-posterior-superior-time", "kinds": ["domain", "domain", "domain", "list"],
              "space directions": np.diag([0.7, 1.3, 2.5, 1.0]),
              "space origin": np.array([10.0, -20.0, 5.0, 0.0])}
    nrrd.write(str(tmp_path / "t.nrrd"), _image()[..., None], header)
    code, _, err = run_cli("predict", checkpoint, tmp_path / "t.nrrd", "-o", tmp_path / "o", "--quiet")
    assert code == 0, err
    out = nib.load(str(tmp_path / "o" / "t_pred.nii.gz"))
    expected = np.diag([-0.7, -1.3, 2.5, 1.0])  # LPS -> RAS: x and y negated
    expected[:3, 3] = [-10.0, 20.0, 5.0]
    np.testing.assert_allclose(out.affine, expected, atol=1e-5)
    assert _codes(out) == (1, 1)


def test_nifti_spatial_units_are_converted_to_mm(tmp_path, run_cli, checkpoint) -> None:
    image = _image()
    mm = np.diag([0.7, 1.3, 2.5, 1.0])
    mm[:3, 3] = [3.0, -4.0, 6.0]
    for name, unit, scale in (("mm", "mm", 1.0), ("um", "micron", 1000.0), ("m", "meter", 0.001)):
        affine = mm.copy()
        affine[:3, :] *= scale  # the same placement, written in another unit
        img = nib.Nifti1Image(image, affine)
        img.header.set_xyzt_units(xyz=unit)
        (tmp_path / name).mkdir()
        nib.save(img, str(tmp_path / name / "scan.nii.gz"))
        _, geometry = read_volume(tmp_path / name / "scan.nii.gz")
        np.testing.assert_allclose(geometry.affine, mm, atol=1e-9)
        assert geometry.spacing == pytest.approx((0.7, 1.3, 2.5))
    masks = []
    for name, unit in (("mm", "mm"), ("um", "micron"), ("m", "meter")):
        code, _, err = run_cli("predict", checkpoint, tmp_path / name, "-o", tmp_path / f"o_{name}", "--quiet")
        assert code == 0, err
        out = nib.load(str(tmp_path / f"o_{name}" / "scan_pred.nii.gz"))
        # the mask keeps its scan's header placement and unit: every reader places the two alike
        assert out.header.get_xyzt_units()[0] == unit
        np.testing.assert_allclose(out.affine, nib.load(str(tmp_path / name / "scan.nii.gz")).affine, rtol=1e-6)
        np.testing.assert_allclose(read_volume(tmp_path / f"o_{name}" / "scan_pred.nii.gz")[1].affine, mm, atol=1e-5)
        masks.append(np.asarray(out.dataobj))
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])


def test_a_degenerate_sform_falls_back_to_the_qform_or_to_no_orientation(tmp_path, run_cli, checkpoint) -> None:
    image = _image()
    broken = nib.Nifti1Image(image, None)
    broken.set_sform(np.zeros((4, 4)), code=1)  # all-zero matrix with a code that says "use me"
    broken.header.set_zooms((0.9, 0.8, 1.1))
    nib.save(broken, str(tmp_path / "zero.nii"))
    assert _codes(nib.load(str(tmp_path / "zero.nii"))) == (1, 0)
    _, geometry = read_volume(tmp_path / "zero.nii")
    assert geometry.oriented is False and geometry.spacing == pytest.approx((0.9, 0.8, 1.1))

    rescued = nib.Nifti1Image(image, None)
    qform = np.diag([-0.9, 0.8, 1.1, 1.0])
    rescued.set_qform(qform, code=1)
    rescued.set_sform(np.zeros((4, 4)), code=1)
    nib.save(rescued, str(tmp_path / "q.nii"))
    _, geometry = read_volume(tmp_path / "q.nii")
    assert geometry.oriented is True
    np.testing.assert_allclose(geometry.affine, qform, atol=1e-6)

    code, _, err = run_cli("predict", checkpoint, tmp_path / "zero.nii", "-o", tmp_path / "o", "--quiet")
    assert code == 0, err  # it used to end in a traceback from the reorientation
    out = nib.load(str(tmp_path / "o" / "zero_pred.nii.gz"))
    assert _codes(out) == (0, 0) and out.shape == image.shape
    np.testing.assert_allclose(out.header.get_zooms(), (0.9, 0.8, 1.1), atol=1e-6)


def test_outputs_of_sources_without_orientation_claim_none(tmp_path, run_cli, checkpoint) -> None:
    image = _image()
    nrrd.write(str(tmp_path / "spacings.nrrd"), image, {"spacings": [0.7, 1.3, 2.5]})
    nrrd.write(str(tmp_path / "scanner.nrrd"), image, {"space": "scanner-xyz", "space directions": np.diag([0.7, 1.3, 2.5])})
    placed = {"space": "left-posterior-superior", "space directions": np.diag([0.7, 1.3, 2.5])}
    nrrd.write(str(tmp_path / "placed.nrrd"), image, placed)
    code, _, err = run_cli("predict", checkpoint, tmp_path / "spacings.nrrd", tmp_path / "scanner.nrrd",
                           tmp_path / "placed.nrrd", "-o", tmp_path / "o", "--quiet")
    assert code == 0, err
    for name in ("spacings", "scanner"):
        out = nib.load(str(tmp_path / "o" / f"{name}_pred.nii.gz"))
        assert _codes(out) == (0, 0), name
        np.testing.assert_allclose(out.header.get_zooms(), (0.7, 1.3, 2.5), atol=1e-6)
    assert _codes(nib.load(str(tmp_path / "o" / "placed_pred.nii.gz"))) == (1, 1)


def test_evaluate_saved_predictions_of_an_unoriented_scan_claim_no_orientation(tmp_path, run_cli, checkpoint) -> None:
    image = _image()
    label = (image > 1).astype(np.uint8)
    for name, array in (("bare.nii.gz", image), ("bare_seg.nii.gz", label)):
        img = nib.Nifti1Image(array, None)  # sform and qform codes 0
        img.header.set_zooms((0.9, 0.8, 1.1))
        nib.save(img, str(tmp_path / name))
    entry = {"image": "bare.nii.gz", "label": "bare_seg.nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [entry], "test": [entry]}))
    code, _, err = run_cli("evaluate", checkpoint, "--data", tmp_path / "dataset.json", "--out", tmp_path / "e",
                           "--quiet", "--save-predictions")
    assert code == 0, err
    out = nib.load(str(tmp_path / "e" / "bare_pred.nii.gz"))
    assert _codes(out) == (0, 0)
    np.testing.assert_allclose(out.header.get_zooms(), (0.9, 0.8, 1.1), atol=1e-6)


def test_score_keeps_a_file_without_orientation_in_stored_order(tmp_path, run_cli) -> None:
    """nibabel's stand-in affine for codes 0 is LAS and centred: it must not pass for a flip of a centred RAS grid."""
    shape = (20, 16, 12)
    gt = np.zeros(shape, np.uint8)
    gt[2:8, 4:12, 3:9] = 1  # off-centre along x: a mirrored copy would overlap it nowhere
    centred = np.eye(4)
    centred[:3, 3] = -(np.array(shape) - 1) / 2
    for d in ("p", "g", "p2", "g2"):
        (tmp_path / d).mkdir()
    nib.save(nib.Nifti1Image(gt, centred), str(tmp_path / "g" / "c.nii.gz"))
    nib.save(nib.Nifti1Image(gt.copy(), None), str(tmp_path / "p" / "c.nii.gz"))  # codes 0, same voxels
    for extra in ((), ("--ignore-affine",)):
        out = tmp_path / f"o{len(extra)}"
        code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", out, "--quiet", *extra)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["dice"]["mean"] == 1.0 and summary["hd95"]["mean"] == 0.0  # it was Dice 0 (mirrored)
        assert summary["reoriented"] == 0 and summary["unoriented"] == 1
        assert err == ("warning: 1 of 1 case(s): only one of the prediction and the ground truth states an "
                       "orientation, so the pair is scored in stored voxel order: check that they overlay\n")
    # the other way round: a ground truth without orientation, an oriented prediction
    nib.save(nib.Nifti1Image(gt, None), str(tmp_path / "g2" / "c.nii.gz"))
    nib.save(nib.Nifti1Image(gt.copy(), centred), str(tmp_path / "p2" / "c.nii.gz"))
    code, _, err = run_cli("score", tmp_path / "p2", tmp_path / "g2", "--out", tmp_path / "o2", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["dice"]["mean"] == 1.0
    # without orientation the shapes must agree: one line
    nib.save(nib.Nifti1Image(np.zeros((16, 20, 12), np.uint8), None), str(tmp_path / "p2" / "c.nii.gz"))
    code, _, err = run_cli("score", tmp_path / "p2", tmp_path / "g2", "--out", tmp_path / "o3", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert ("prediction shape (16, 20, 12) differs from ground truth shape (20, 16, 12), and c.nii.gz states no "
            "orientation to put its voxels in the other's order") in err


def test_unusual_unit_codes_and_tiny_voxels_in_meters(tmp_path) -> None:
    image = _image()
    odd = nib.Nifti1Image(image, np.diag([0.7, 1.3, 2.5, 1.0]))
    odd.header["xyzt_units"] = 58  # mm (2) with a time unit nibabel does not name: it used to be unreadable
    nib.save(odd, str(tmp_path / "odd.nii"))
    _, geometry = read_volume(tmp_path / "odd.nii")
    assert geometry.spacing == pytest.approx((0.7, 1.3, 2.5)) and geometry.oriented
    tiny = nib.Nifti1Image(image, np.diag([5e-5, 1e-4, 2e-4, 1.0]))  # 0.05 x 0.1 x 0.2 mm, in meters
    tiny.header.set_xyzt_units(xyz="meter")
    nib.save(tiny, str(tmp_path / "tiny.nii"))
    _, geometry = read_volume(tmp_path / "tiny.nii")
    assert geometry.oriented  # not taken for a degenerate matrix because its numbers are small
    assert geometry.spacing == pytest.approx((0.05, 0.1, 0.2), rel=1e-6)


def _header_placement(img) -> tuple:
    h = img.header
    return (_codes(img), np.asarray(h.get_sform()), np.asarray(h.get_qform()),
            np.asarray(h["pixdim"][:4]), int(h["xyzt_units"]) & 7)


def _assert_same_placement(a, b) -> None:
    (codes_a, *rest_a), (codes_b, *rest_b) = _header_placement(a), _header_placement(b)
    assert codes_a == codes_b
    for x, y in zip(rest_a, rest_b):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_outputs_keep_a_scan_whose_qform_and_pixdim_disagree_with_its_sform_in_place(tmp_path, run_cli,
                                                                                      checkpoint) -> None:
    # canet (as nibabel) places voxels by the sform; ITK-based viewers may use the qform or pixdim. A mask
    # written with qform = sform and fresh pixdim was placed elsewhere than its scan by such a viewer.
    image = _image()
    sform = np.diag([1.0, 1.0, 1.0, 1.0])
    two = nib.Nifti1Image(image, None)
    two.set_sform(sform, code=2)
    two.set_qform(np.diag([-2.0, 2.0, 2.0, 1.0]), code=1)  # another placement, as the header says it
    nib.save(two, str(tmp_path / "two.nii.gz"))
    stale = nib.Nifti1Image(image, None)
    stale.set_sform(np.diag([0.8, 0.9, 1.5, 1.0]), code=1)
    stale.header["pixdim"][1:4] = 1.0  # a stale pixdim beside the sform's voxel sizes, no qform
    nib.save(stale, str(tmp_path / "stale.nii.gz"))
    scans = {n: nib.load(str(tmp_path / f"{n}.nii.gz")) for n in ("two", "stale")}
    assert _codes(scans["two"]) == (2, 1) and _codes(scans["stale"]) == (1, 0)
    np.testing.assert_allclose(scans["stale"].header["pixdim"][1:4], 1.0)

    code, _, err = run_cli("predict", checkpoint, tmp_path / "two.nii.gz", tmp_path / "stale.nii.gz",
                           "-o", tmp_path / "o", "--quiet", "--probabilities")
    assert code == 0, err
    for name, scan in scans.items():
        for kind in ("pred", "prob"):
            out = nib.load(str(tmp_path / "o" / f"{name}_{kind}.nii.gz"))
            _assert_same_placement(out, scan)
    np.testing.assert_allclose(nib.load(str(tmp_path / "o" / "two_pred.nii.gz")).affine, sform)

    label = (image > 1).astype(np.uint8)
    seg = nib.Nifti1Image(label, None)
    seg.set_sform(sform, code=2)
    nib.save(seg, str(tmp_path / "two_seg.nii.gz"))
    entry = {"image": "two.nii.gz", "label": "two_seg.nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [entry], "test": [entry]}))
    code, _, err = run_cli("evaluate", checkpoint, "--data", tmp_path / "dataset.json", "--out", tmp_path / "e",
                           "--quiet", "--save-predictions")
    assert code == 0, err
    _assert_same_placement(nib.load(str(tmp_path / "e" / "two_pred.nii.gz")), scans["two"])


def test_a_source_of_another_grid_is_not_copied(tmp_path) -> None:
    from canet.data import save_nifti

    src = nib.Nifti1Image(_image(), None)
    src.set_sform(np.diag([1.0, 1.0, 1.0, 1.0]), code=2)
    src.set_qform(np.diag([-2.0, 2.0, 2.0, 1.0]), code=1)
    nib.save(src, str(tmp_path / "s.nii.gz"))
    shifted = np.eye(4)
    shifted[:3, 3] = 5.0  # not the source's placement: written from the affine, codes 1
    out = nib.load(str(save_nifti(tmp_path / "a.nii.gz", np.zeros((20, 24, 16), np.uint8), shifted,
                                  like=tmp_path / "s.nii.gz")))
    assert _codes(out) == (1, 1)
    np.testing.assert_allclose(out.header.get_qform(), shifted, atol=1e-6)
    out = nib.load(str(save_nifti(tmp_path / "b.nii.gz", np.zeros((20, 24, 8), np.uint8), np.eye(4),
                                  like=tmp_path / "s.nii.gz")))  # another shape
    assert _codes(out) == (1, 1)
    out = nib.load(str(save_nifti(tmp_path / "c.nii.gz", np.zeros((20, 24, 16), np.uint8), np.eye(4),
                                  like=tmp_path / "s.nii.gz")))
    assert _codes(out) == (2, 1) and out.get_data_dtype() == np.uint8  # same grid: copied, its own dtype


def test_nrrd_length_units_are_converted_to_mm(tmp_path) -> None:
    image = _image()
    directions = np.diag([500.0, 600.0, 2000.0])
    nrrd.write(str(tmp_path / "um.nrrd"), image, {"space": "left-posterior-superior", "space directions": directions,
                                                  "space origin": np.array([1000.0, 0.0, 0.0]),
                                                  "space units": ["microns", "microns", "microns"]})
    _, geometry = read_volume(tmp_path / "um.nrrd")
    expected = np.diag([-0.5, -0.6, 2.0, 1.0])
    expected[0, 3] = -1.0  # 1000 microns along L is -1 mm in RAS
    np.testing.assert_allclose(geometry.affine, expected, atol=1e-9)
    assert geometry.spacing == pytest.approx((0.5, 0.6, 2.0)) and geometry.unit == "mm"
    nrrd.write(str(tmp_path / "cm.nrrd"), image, {"spacings": [0.05, 0.06, 0.2], "units": ["cm", "cm", "cm"]})
    assert read_volume(tmp_path / "cm.nrrd")[1].spacing == pytest.approx((0.5, 0.6, 2.0))
    nrrd.write(str(tmp_path / "mm.nrrd"), image, {"space": "RAS", "space directions": np.diag([0.5, 0.6, 2.0]),
                                                  "space units": ["mm", "mm", "mm"]})
    assert read_volume(tmp_path / "mm.nrrd")[1].spacing == pytest.approx((0.5, 0.6, 2.0))
    nrrd.write(str(tmp_path / "in.nrrd"), image, {"space": "RAS", "space directions": np.diag([0.5, 0.6, 2.0]),
                                                  "space units": ["inch", "inch", "inch"]})
    with pytest.raises(DataError, match=r"in.nrrd: NRRD space units 'inch' is not a length unit canet knows"):
        read_volume(tmp_path / "in.nrrd")


def test_nrrd_units_the_reader_cannot_read_are_refused(tmp_path) -> None:
    image = _image()
    # pynrrd drops non-ASCII characters: "µm" arrived as "m", a distance a million times too long
    nrrd.write(str(tmp_path / "mu.nrrd"), image, {"space": "RAS", "space directions": np.eye(3),
                                                  "space units": ["um", "um", "um"]})
    raw = (tmp_path / "mu.nrrd").read_bytes()
    assert raw.count(b'"um"') == 3
    (tmp_path / "mu.nrrd").write_bytes(raw.replace(b'"um"', '"µm"'.encode()))
    assert nrrd.read_header(str(tmp_path / "mu.nrrd"))["space units"] == ["m", "m", "m"]  # what canet is given
    with pytest.raises(DataError, match=r"mu.nrrd: NRRD space units .* holds a non-ASCII unit that the NRRD reader "
                                        r"drops \(µm would be read as m\)"):
        read_volume(tmp_path / "mu.nrrd")
    header = {"space": "RAS", "space directions": np.eye(3), "space units": ["cm"]}
    nrrd.write(str(tmp_path / "one.nrrd"), image, header)  # x alone was scaled
    with pytest.raises(DataError, match=r"one.nrrd: NRRD space units names 1 unit\(s\) for 3 axes"):
        read_volume(tmp_path / "one.nrrd")
    nrrd.write(str(tmp_path / "t.nrrd"), image, {"units": ["s", "mm", "mm"]})  # no spacings: units say nothing
    _, geometry = read_volume(tmp_path / "t.nrrd")
    assert geometry.unit == "voxels"
