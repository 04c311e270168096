"""`canet score` and `canet predict` through the real CLI entry point, checked against medpy."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from medpy.metric import binary as mb
from nibabel.orientations import axcodes2ornt, ornt_transform

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.io import file_sha256
from canet.models import create_model


def _save_nifti(path, array, affine) -> None:
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _blob_pair(rng, shape):
    gt = np.zeros(shape, np.uint8)
    c = rng.integers(8, [s - 8 for s in shape])
    gt[c[0] - 5 : c[0] + 5, c[1] - 4 : c[1] + 6, c[2] - 3 : c[2] + 3] = 1
    pred = np.roll(gt, int(rng.integers(-2, 3)), axis=0)
    pred[c[0] - 6 : c[0] - 2, c[1] - 4 : c[1], c[2] - 4 : c[2]] = 1
    return pred, gt


AFFINE = np.array([[0.0, 0.7, 0.0, 10.0], [-0.8, 0.0, 0.0, -5.0], [0.0, 0.0, 1.4, 3.0], [0, 0, 0, 1]])
SPACING = (0.8, 0.7, 1.4)  # column norms of AFFINE


def test_score_two_folders_matches_medpy(tmp_path, run_cli) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    pairs = {}
    for case in ("c1", "c2", "c3"):
        pred, gt = _blob_pair(rng, (30, 28, 20))
        pairs[case] = (pred, gt)
        _save_nifti(tmp_path / "pred" / f"{case}.nii.gz", pred, AFFINE)
        _save_nifti(tmp_path / "gt" / f"{case}.nii.gz", gt, AFFINE)
    (tmp_path / "pred" / "notes.txt").write_text("ignored")
    code, out, err = run_cli("score", tmp_path / "pred", tmp_path / "gt", "--out", tmp_path / "mm", "--quiet")
    assert code == 0, err
    assert "dice" in out and "hd95" in out
    rows = _read_csv(tmp_path / "mm" / "metrics.csv")
    assert list(rows[0]) == ["case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"]
    assert [r["case"] for r in rows] == ["c1", "c2", "c3"]
    for row in rows:
        pred, gt = pairs[row["case"]]
        assert float(row["dice"]) == pytest.approx(mb.dc(pred, gt), abs=1e-12)
        assert float(row["jaccard"]) == pytest.approx(mb.jc(pred, gt), abs=1e-12)
        assert float(row["hd95"]) == pytest.approx(mb.hd95(pred, gt, SPACING), abs=1e-6)
        assert float(row["asd"]) == pytest.approx(mb.asd(pred, gt, SPACING), abs=1e-6)
    summary = json.loads((tmp_path / "mm" / "summary.json").read_text())
    assert summary["cases"] == 3 and summary["spacing"] == "mm"
    assert summary["dice"]["mean"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]))

    code, _, err = run_cli("score", tmp_path / "pred", tmp_path / "gt", "--out", tmp_path / "vox", "--voxels", "--quiet")
    assert code == 0, err
    rows = _read_csv(tmp_path / "vox" / "metrics.csv")
    pred, gt = pairs["c1"]
    assert float(rows[0]["hd95"]) == pytest.approx(mb.hd95(pred, gt), abs=1e-6)
    assert json.loads((tmp_path / "vox" / "summary.json").read_text())["spacing"] == "voxels"


def test_score_pair_folder_with_an_empty_prediction(tmp_path, run_cli) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "pairs"
    folder.mkdir()
    pred, gt = _blob_pair(rng, (24, 24, 18))
    _save_nifti(folder / "a_pred.nii.gz", pred, np.eye(4))
    _save_nifti(folder / "a_gt.nii.gz", gt, np.eye(4))
    _save_nifti(folder / "b_pred.nii.gz", np.zeros_like(gt), np.eye(4))
    _save_nifti(folder / "b_gt.nii.gz", gt, np.eye(4))
    code, out, err = run_cli("score", folder, "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    rows = {r["case"]: r for r in _read_csv(tmp_path / "out" / "metrics.csv")}
    assert float(rows["a"]["asd"]) == pytest.approx(mb.asd(pred, gt), abs=1e-6)
    assert rows["b"]["hd95"] == "nan" and float(rows["b"]["dice"]) == 0.0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["hd95"]["nan"] == 1 and summary["hd95"]["n"] == 1
    assert summary["hd95"]["mean"] == pytest.approx(float(rows["a"]["hd95"]))
    assert summary["empty_pred"] == 1
    assert "empty predictions: 1" in out


def test_score_multiclass_is_per_class(tmp_path, run_cli) -> None:
    gt = np.zeros((20, 20, 12), np.uint8)
    gt[2:8, 2:8, 2:8] = 1
    gt[11:17, 11:17, 3:9] = 2
    pred = np.roll(gt, 1, axis=2)
    # case y: class 2 is in neither mask (it is not scored there, not a perfect 1.0)
    gt_y, pred_y = np.where(gt == 2, 0, gt).astype(np.uint8), np.where(pred == 2, 0, pred).astype(np.uint8)
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "p" / "x_pred.nii.gz", pred, np.eye(4))
    _save_nifti(tmp_path / "g" / "x_gt.nii.gz", gt, np.eye(4))
    _save_nifti(tmp_path / "p" / "y_pred.nii.gz", pred_y, np.eye(4))
    _save_nifti(tmp_path / "g" / "y_gt.nii.gz", gt_y, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    rows = {r["case"]: r for r in _read_csv(tmp_path / "o" / "metrics.csv")}
    assert sorted(rows) == ["x", "y"]
    row = rows["x"]
    for c in (1, 2):
        assert float(row[f"dice_{c}"]) == pytest.approx(mb.dc(pred == c, gt == c))
        assert float(row[f"hd95_{c}"]) == pytest.approx(mb.hd95(pred == c, gt == c))
    dice_1 = mb.dc(pred == 1, gt == 1)  # shifted by one voxel along z: 5/6
    assert dice_1 == pytest.approx(5 / 6)
    assert rows["y"]["dice_2"] == "nan" and rows["y"]["hd95_2"] == "nan"
    assert float(rows["y"]["dice"]) == pytest.approx(dice_1)  # class 1 alone
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["num_classes"] == 3 and summary["absent_classes"] == {"1": 0, "2": 1}
    assert summary["per_class"]["2"]["dice"]["n"] == 1 and summary["per_class"]["2"]["dice"]["nan"] == 1
    assert summary["dice"]["mean"] == pytest.approx(((dice_1 + mb.dc(pred == 2, gt == 2)) / 2 + dice_1) / 2)


def _blob(shape=(20, 18, 12)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[4:12, 5:13, 3:9] = 1
    return m


def test_score_a_0_255_ground_truth_is_binary(tmp_path, run_cli) -> None:
    """The LA challenge's masks store the atrium as 255: a missed object scores Dice 0, not ~1."""
    gt = _blob()
    hit = np.roll(gt, 1, axis=0)
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "g" / "miss.nii.gz", gt * 255, np.eye(4))
    _save_nifti(tmp_path / "p" / "miss.nii.gz", np.zeros_like(gt), np.eye(4))
    _save_nifti(tmp_path / "g" / "hit.nii.gz", gt * 255, np.eye(4))
    _save_nifti(tmp_path / "p" / "hit.nii.gz", hit, np.eye(4))
    for extra in ((), ("--num-classes", "2")):
        out = tmp_path / f"o{len(extra)}"
        code, stdout, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", out, "--quiet", *extra)
        assert code == 0, err
        rows = {r["case"]: r for r in _read_csv(out / "metrics.csv")}
        assert list(rows["miss"]) == ["case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"]  # binary columns
        assert float(rows["miss"]["dice"]) == 0.0 and rows["miss"]["hd95"] == "nan"
        assert float(rows["hit"]["dice"]) == pytest.approx(7 / 8)  # one of 8 slices along x lost
        assert float(rows["hit"]["hd95"]) == pytest.approx(mb.hd95(hit, gt))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["num_classes"] == 2 and summary["dice"]["mean"] == pytest.approx(7 / 16)


def test_score_asks_when_binary_ground_truths_use_different_small_values(tmp_path, run_cli) -> None:
    """Case a marks its object 1, case b marks it 2: one structure a case of a 3-class map, or binary masks?

    Scored as binary, a prediction that swaps the two classes in both cases would get Dice 1 (the wrong
    answer if they are classes); so the set is refused until --num-classes says which. 0/1 beside 0/255
    (two binary conventions) is not asked about.
    """
    gt = _blob()
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "g" / "a.nii.gz", gt * 1, np.eye(4))
    _save_nifti(tmp_path / "g" / "b.nii.gz", gt * 2, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt * 2, np.eye(4))  # the classes swapped
    _save_nifti(tmp_path / "p" / "b.nii.gz", gt * 1, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert "different values (1 in case 'a', 2 in case 'b')" in err and "--num-classes 3" in err
    assert not (tmp_path / "o" / "summary.json").exists()
    # As 3 classes: each case's object is missed and a wrong class predicted; class Dice 0 in both cases.
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o3", "--quiet",
                           "--num-classes", "3")
    assert code == 0, err
    summary = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert summary["num_classes"] == 3 and summary["dice"]["mean"] == 0.0
    # As binary masks, on request: every object found, Dice 1.
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o2", "--quiet",
                           "--num-classes", "2")
    assert code == 0, err
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["dice"]["mean"] == 1.0
    # 0/1 beside 0/255: two binary conventions, scored as binary without a question.
    _save_nifti(tmp_path / "g" / "b.nii.gz", gt * 255, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt * 1, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o4", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "o4" / "summary.json").read_text())["dice"]["mean"] == 1.0
    # more classes than a byte holds: ~1200 metric columns of nothing, now one line as for a datalist
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o5", "--num-classes", "300")
    assert code == 2 and err == "error: num_classes must be at most 256 (masks are read as values 0..255), got 300\n"


def test_score_asks_when_a_prediction_marks_another_value_than_its_ground_truth(tmp_path, run_cli) -> None:
    """Every ground truth 0/2 (class 2 of a map, one class a case), the predictions 0/1: scored as binary
    masks, each prediction names the wrong class and would get Dice 1. Refused until --num-classes says."""
    gt = _blob()
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    for case in ("a", "b"):
        _save_nifti(tmp_path / "g" / f"{case}.nii.gz", gt * 2, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt * 2, np.eye(4))
    _save_nifti(tmp_path / "p" / "b.nii.gz", gt * 1, np.eye(4))  # the wrong class
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert "different values (1 in the prediction of case 'b', 2 in the ground truth of case 'a')" in err, err
    assert "--num-classes 2" in err and "--num-classes 3" in err
    assert not (tmp_path / "o" / "summary.json").exists()
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o3", "--quiet",
                           "--num-classes", "3")
    assert code == 0, err
    rows = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert rows["dice"]["mean"] == 0.5  # case a right (Dice 1), case b's class 2 missed (Dice 0)
    # A 0/255 prediction of a 0/1 ground truth, or an empty one: binary conventions, no question.
    for case in ("a", "b"):
        _save_nifti(tmp_path / "g" / f"{case}.nii.gz", gt * 1, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt * 255, np.eye(4))
    _save_nifti(tmp_path / "p" / "b.nii.gz", gt * 0, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o4", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "o4" / "summary.json").read_text())["dice"]["mean"] == 0.5


def test_score_refuses_masks_binary_scoring_would_merge(tmp_path, run_cli) -> None:
    multi = _blob()
    multi[14:18, 2:6, 2:6] = 2
    for d in ("p", "g", "p2", "g2"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "g" / "a.nii.gz", multi, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", multi, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet",
                           "--num-classes", "2")
    assert code == 2 and err.count("\n") == 1
    assert "a.nii.gz holds values {1, 2}, but the task is binary" in err
    # ground truths with one object value (255), predictions with two labels: refused, not guessed
    _save_nifti(tmp_path / "g2" / "a.nii.gz", _blob() * 255, np.eye(4))
    _save_nifti(tmp_path / "p2" / "a.nii.gz", multi, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p2", tmp_path / "g2", "--out", tmp_path / "o2", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "a.nii.gz holds values {1, 2}, but the task is binary" in err


def test_score_bad_inputs_end_in_one_line(tmp_path, run_cli) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    code, out, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o")
    assert code == 2 and err.startswith("error: no NIfTI, NRRD or HDF5 files matched") and err.count("\n") == 1
    _save_nifti(tmp_path / "p" / "a.nii.gz", np.zeros((5, 5, 5), np.uint8), np.eye(4))
    _save_nifti(tmp_path / "g" / "a.nii.gz", np.zeros((5, 5, 6), np.uint8), np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and "(5, 5, 5) differs from ground truth shape (5, 5, 6)" in err and err.count("\n") == 1
    _save_nifti(tmp_path / "p" / "b.nii.gz", np.zeros((5, 5, 5), np.uint8), np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and "b.nii.gz has no ground truth" in err
    code, _, err = run_cli("score", tmp_path / "missing", tmp_path / "g", "--out", tmp_path / "o")
    assert code == 2 and "prediction folder not found" in err


# --------------------------------------------------------------------------- predict


def test_predict_nifti_and_nrrd_keep_the_geometry(tmp_path, run_cli, checkpoint) -> None:
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = rng.standard_normal((36, 34, 18)).astype(np.float32)
    _save_nifti(inputs / "scan1.nii.gz", image, AFFINE)
    directions = np.array([[-0.6, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 1.2]])
    header = {"space": "left-posterior-superior", "space directions": directions, "space origin": np.array([1.0, 2.0, 3.0])}
    nrrd.write(str(inputs / "scan2.nrrd"), image[:30] * 50 + 200, header)
    out = tmp_path / "out"
    code, stdout, err = run_cli("predict", checkpoint, inputs, "-o", out, "--probabilities", "--quiet")
    assert code == 0, err
    assert "wrote 2 mask(s)" in stdout
    m1 = nib.load(str(out / "scan1_pred.nii.gz"))
    np.testing.assert_allclose(m1.affine, AFFINE, atol=1e-5)
    assert m1.shape == image.shape and m1.get_data_dtype() == np.uint8
    assert set(np.unique(np.asarray(m1.dataobj))) <= {0, 1}
    p1 = np.asarray(nib.load(str(out / "scan1_prob.nii.gz")).dataobj)
    assert p1.shape == image.shape and p1.min() >= 0 and p1.max() <= 1
    # mask = LCC of (prob > 0.5)
    from canet.inferers import largest_connected_component

    np.testing.assert_array_equal(np.asarray(m1.dataobj), largest_connected_component(p1 > 0.5).astype(np.uint8))

    m2 = nib.load(str(out / "scan2_pred.nii.gz"))
    expected = np.eye(4)
    expected[:3, :3] = directions.T  # pynrrd rows are per-axis steps
    expected[:3, 3] = [1.0, 2.0, 3.0]
    expected[:2, :] *= -1  # LPS -> RAS
    np.testing.assert_allclose(m2.affine, expected, atol=1e-5)
    np.testing.assert_allclose(m2.header.get_zooms(), (0.6, 0.6, 1.2), atol=1e-6)
    # z-scoring makes the result independent of the intensity scale (scan2 = 50 * image + 200)
    same = tmp_path / "same"
    same.mkdir()
    _save_nifti(same / "scan2b.nii.gz", image[:30], np.eye(4))
    code, _, err = run_cli("predict", checkpoint, same / "scan2b.nii.gz", "-o", out, "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(
        np.asarray(nib.load(str(out / "scan2b_pred.nii.gz")).dataobj), np.asarray(m2.dataobj)
    )


def test_predict_output_of_an_unoriented_nifti_claims_no_orientation(tmp_path, run_cli, checkpoint) -> None:
    """A source whose sform and qform codes are 0: its outputs get codes 0 too, and read back placed alike."""
    image = np.random.default_rng(1).standard_normal((36, 34, 18)).astype(np.float32)
    src = nib.Nifti1Image(image, None)  # no affine: sform and qform codes 0
    src.header.set_zooms((0.8, 0.7, 1.4))
    (tmp_path / "in").mkdir()
    nib.save(src, str(tmp_path / "in" / "bare.nii.gz"))
    _save_nifti(tmp_path / "in" / "placed.nii.gz", image, AFFINE)  # an oriented one beside it keeps code 1
    code, _, err = run_cli("predict", checkpoint, tmp_path / "in", "-o", tmp_path / "out", "--probabilities", "--quiet")
    assert code == 0, err
    source = nib.load(str(tmp_path / "in" / "bare.nii.gz"))
    assert (int(source.header["sform_code"]), int(source.header["qform_code"])) == (0, 0)
    for name in ("bare_pred.nii.gz", "bare_prob.nii.gz"):
        out = nib.load(str(tmp_path / "out" / name))
        assert (int(out.header["sform_code"]), int(out.header["qform_code"])) == (0, 0), name
        np.testing.assert_allclose(out.header.get_zooms()[:3], (0.8, 0.7, 1.4), atol=1e-6)
        np.testing.assert_allclose(out.affine, source.affine, atol=1e-6)
    placed = nib.load(str(tmp_path / "out" / "placed_pred.nii.gz"))
    # nibabel wrote the oriented source with sform code 2, qform code 0: its mask keeps both
    assert (int(placed.header["sform_code"]), int(placed.header["qform_code"])) == (2, 0)
    np.testing.assert_allclose(placed.affine, AFFINE, atol=1e-5)


def test_predict_bad_inputs_end_in_one_line(tmp_path, run_cli, checkpoint) -> None:
    _save_nifti(tmp_path / "flat.nii.gz", np.zeros((10, 12), np.float32), np.eye(4))
    code, _, err = run_cli("predict", checkpoint, tmp_path / "flat.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "2D image" in err and err.count("\n") == 1
    _save_nifti(tmp_path / "multi.nii.gz", np.zeros((10, 12, 8, 3), np.float32), np.eye(4))
    code, _, err = run_cli("predict", checkpoint, tmp_path / "multi.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "4D image" in err
    _save_nifti(tmp_path / "ok.nii.gz", np.zeros((10, 12, 8), np.float32), np.eye(4))
    code, _, err = run_cli("predict", tmp_path / "nope.pt", tmp_path / "ok.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "checkpoint not found" in err and err.count("\n") == 1
    code, _, err = run_cli("predict", tmp_path, tmp_path / "ok.nii.gz", "-o", tmp_path / "o")  # a run folder, say
    assert code == 2 and err == f"error: {tmp_path} is a folder; give the checkpoint file in it (e.g. {tmp_path / 'checkpoints' / 'last.pt'})\n"
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    code, _, err = run_cli("predict", tmp_path / "foreign.pt", tmp_path / "ok.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "is not a canet checkpoint" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("predict", checkpoint, tmp_path / "empty", "-o", tmp_path / "o")
    assert code == 2 and "no NIfTI, NRRD or HDF5 files matched" in err
    code, _, err = run_cli("predict", checkpoint, tmp_path / "missing.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "input not found" in err


def _raw_datalist(root, normalize: bool) -> object:
    """Three 32^3 NIfTI cases with raw intensities around 300..500 (far from z-scores)."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(3):
        label = np.zeros((32, 32, 32), np.uint8)
        label[8:22, 9:24, 10:20] = 1
        image = (300.0 + 200.0 * label + rng.normal(0, 20, label.shape)).astype(np.float32)
        _save_nifti(root / f"img{i}.nii.gz", image, np.diag([0.8, 0.8, 1.5, 1.0]))
        _save_nifti(root / f"lab{i}.nii.gz", label, np.diag([0.8, 0.8, 1.5, 1.0]))
        entries.append({"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz"})
    path = root / "dataset.json"
    path.write_text(json.dumps({"normalize": normalize, "training": entries, "test": entries[:1]}))
    return path


def _train_tiny(datalist, run) -> object:
    from canet.training.config import config_from_dict
    from canet.training.trainer import Trainer

    cfg = config_from_dict({
        "method": "vnet", "seed": 3, "iterations": 1,
        "data": {"root": str(datalist), "patch_size": [32, 32, 32], "batch_size": 2, "labeled_bs": 2,
                 "num_workers": 0},
        "model": {"n_filters": 2},
        "train": {"device": "cpu", "log_every": 1, "checkpoint_every": 1, "keep_every": 0},
    })
    return Trainer(cfg, run, quiet=True, log=lambda m: None).run().last_checkpoint


@pytest.mark.slow
def test_predict_and_evaluate_apply_the_training_normalisation(tmp_path, run_cli) -> None:
    """A model trained with ``normalize: false`` gets raw intensities in predict and evaluate, not z-scores."""
    from canet.checkpoint import load_checkpoint
    from canet.data import zscore
    from canet.evaluation import checkpoint_settings
    from canet.inferers import predict_volume
    from canet.models import load_model

    datalist = _raw_datalist(tmp_path, normalize=False)
    ckpt = _train_tiny(datalist, tmp_path / "run")
    settings = checkpoint_settings(load_checkpoint(ckpt))
    assert settings["normalize"] is False and settings["recorded"] is True
    assert settings["orientation"] == "RAS" and settings["spacing"] == pytest.approx((0.8, 0.8, 1.5))
    assert settings["lcc"] is False and settings["patch_size"] == (32, 32, 32)

    out = tmp_path / "pred"
    code, _, err = run_cli("predict", ckpt, tmp_path / "img0.nii.gz", "-o", out, "--probabilities", "--quiet")
    assert code == 0, err
    model = load_model(ckpt)
    raw = np.asarray(nib.load(str(tmp_path / "img0.nii.gz")).dataobj)
    _, expected = predict_volume(model, raw, (32, 32, 32), lcc=False)
    _, zscored = predict_volume(model, zscore(raw), (32, 32, 32), lcc=False)
    got = np.asarray(nib.load(str(out / "img0_prob.nii.gz")).dataobj)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(zscored - expected).max() > 1e-3  # the test tells the two apart

    # evaluate: the datalist says normalize: true, the checkpoint says the network saw raw images
    data = json.loads(datalist.read_text())
    data["normalize"] = True
    datalist.write_text(json.dumps(data))
    code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", tmp_path / "ev", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["normalize"] == "none" and summary["lcc"] is False and summary["lcc_from"] == "dataset"
    mask, _ = predict_volume(model, raw, (32, 32, 32), lcc=False)
    label = np.asarray(nib.load(str(tmp_path / "lab0.nii.gz")).dataobj)
    row = _read_csv(tmp_path / "ev" / "metrics.csv")[0]
    assert float(row["dice"]) == pytest.approx(mb.dc(mask, label), abs=1e-12)


def test_checkpoint_settings_without_a_record_keep_the_old_behaviour() -> None:
    from canet.evaluation import checkpoint_settings

    old = {"model": {"kwargs": {"patch_size": [64, 64, 32], "num_classes": 3}},
           "config": {"data": {"patch_size": [96, 96, 48]}}}
    assert checkpoint_settings(old) == {
        "patch_size": (96, 96, 48), "num_classes": 3, "normalize": None, "orientation": None,
        "spacing": None, "lcc": None, "recorded": False, "source": "none", "training_data": None,
    }
    assert checkpoint_settings({"model": {"kwargs": {}}, "config": None})["patch_size"] == (112, 112, 80)
    from canet.errors import CheckpointError

    for bad in ({"normalize": "minmax"}, {"normalize": "zscore", "orientation": "XYZ"},
                {"normalize": "zscore", "spacing": [1.0, -1.0, 1.0]}):
        with pytest.raises(CheckpointError, match="checkpoint records"):
            checkpoint_settings({"model": {"kwargs": {}}, "preprocessing": bad})


# --------------------------------------------------------------------------- orientation


def _scan(shape=(36, 34, 20)) -> np.ndarray:
    rng = np.random.default_rng(5)
    image = rng.normal(0, 1, shape).astype(np.float32)
    image[6:24, 8:20, 4:14] += 2.0
    return image


def _asymmetric_checkpoint(path, record: dict | None) -> object:
    from canet.data import zscore
    from canet.inferers import predict_volume

    torch.manual_seed(1)
    model = create_model("vnet", n_filters=2)  # random weights: no symmetry under flips or transposes
    _, prob = predict_volume(model, zscore(_scan()), (32, 32, 16), lcc=False)
    median = float(np.median(prob))
    with torch.no_grad():  # centre the output so that about half of the scan is foreground
        model.head_seg.bias -= float(np.log(median / (1 - median)))
    extra = {} if record is None else {"preprocessing": record}
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]}, **extra), path)
    return model


RAS_RECORD = {"normalize": "zscore", "orientation": "RAS", "spacing": [0.8, 0.9, 1.5], "lcc": False,
              "dataset": "datalist"}


def test_predict_brings_inputs_to_the_training_orientation_and_back(tmp_path, run_cli) -> None:
    """A flipped and permuted copy of a scan gets the same prediction, flipped and permuted back."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    from canet.data import zscore
    from canet.inferers import predict_volume

    model = _asymmetric_checkpoint(tmp_path / "ras.pt", RAS_RECORD)
    image = _scan()
    ras_affine = np.diag([0.8, 0.9, 1.5, 1.0])
    original = nib.Nifti1Image(image, ras_affine)
    turn = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(("P", "S", "L")))
    copy = original.as_reoriented(turn)  # the same scan stored as P, S, L: axes permuted and flipped
    assert nib.aff2axcodes(copy.affine) == ("P", "S", "L")
    (tmp_path / "in").mkdir()
    nib.save(original, str(tmp_path / "in" / "orig.nii.gz"))
    nib.save(copy, str(tmp_path / "in" / "copy.nii.gz"))
    warnings: list[str] = []
    from canet.evaluation import predict_files

    predict_files(tmp_path / "ras.pt", [tmp_path / "in"], tmp_path / "out", probabilities=True, progress=False,
                  warn=warnings.append)
    assert warnings == []
    p_orig = nib.load(str(tmp_path / "out" / "orig_pred.nii.gz"))
    p_copy = nib.load(str(tmp_path / "out" / "copy_pred.nii.gz"))
    expected, _ = predict_volume(model, zscore(image), (32, 32, 16), lcc=False)
    np.testing.assert_array_equal(np.asarray(p_orig.dataobj), expected)
    assert 0.4 < expected.mean() < 0.6  # a real, non-trivial mask
    np.testing.assert_allclose(p_copy.affine, copy.affine, atol=1e-6)  # the input's own affine ...
    assert p_copy.shape == copy.shape  # ... and voxel order
    np.testing.assert_array_equal(np.asarray(p_copy.dataobj), apply_orientation(expected, turn))
    prob_copy = np.asarray(nib.load(str(tmp_path / "out" / "copy_prob.nii.gz")).dataobj)
    prob_orig = np.asarray(nib.load(str(tmp_path / "out" / "orig_prob.nii.gz")).dataobj)
    np.testing.assert_allclose(prob_copy, apply_orientation(prob_orig, turn), atol=1e-6)
    # the model itself is not symmetric: fed in stored order the copy gives another mask
    stored, _ = predict_volume(model, zscore(np.asarray(copy.dataobj)), (32, 32, 16), lcc=False)
    assert not np.array_equal(stored, apply_orientation(expected, turn))

    # a checkpoint without the record keeps the stored voxel order (the earlier behaviour)
    _asymmetric_checkpoint(tmp_path / "old.pt", None)
    predict_files(tmp_path / "old.pt", [tmp_path / "in" / "copy.nii.gz"], tmp_path / "old", progress=False)
    from canet.inferers import largest_connected_component

    np.testing.assert_array_equal(
        np.asarray(nib.load(str(tmp_path / "old" / "copy_pred.nii.gz")).dataobj),
        largest_connected_component(stored),  # LCC stays on for checkpoints without a record
    )


def test_predict_warns_about_a_voxel_size_far_from_the_training_data(tmp_path, run_cli) -> None:
    _asymmetric_checkpoint(tmp_path / "ras.pt", RAS_RECORD)
    _save_nifti(tmp_path / "fine.nii.gz", _scan(), np.diag([0.85, 0.9, 1.4, 1.0]))  # within 20 %
    _save_nifti(tmp_path / "coarse.nii.gz", _scan(), np.diag([0.8, 1.2, 1.5, 1.0]))  # y 33 % larger
    code, _, err = run_cli("predict", tmp_path / "ras.pt", tmp_path / "fine.nii.gz", tmp_path / "coarse.nii.gz",
                           "-o", tmp_path / "out", "--quiet")
    assert code == 0
    lines = err.strip().splitlines()
    assert lines == [
        f"warning: {tmp_path / 'coarse.nii.gz'}: voxel size (0.8, 1.2, 1.5) mm differs from the training "
        "data's (0.8, 0.9, 1.5) mm by 33%; resample it to that size for reliable results"
    ]


def test_predict_fills_nan_voxels_and_says_how_many(tmp_path, run_cli) -> None:
    """A scan with NaN padding gets the mask of the scan with those voxels at its minimum, and one warning line."""
    from canet.data import zscore
    from canet.inferers import predict_volume

    model = _asymmetric_checkpoint(tmp_path / "ras.pt", RAS_RECORD)
    image = _scan()
    holed = image.copy()
    holed[0, :, :3] = np.nan  # 34 * 3 voxels of padding
    _save_nifti(tmp_path / "holed.nii.gz", holed, np.diag([0.8, 0.9, 1.5, 1.0]))
    code, _, err = run_cli("predict", tmp_path / "ras.pt", tmp_path / "holed.nii.gz", "-o", tmp_path / "out", "--quiet")
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"warning: {tmp_path / 'holed.nii.gz'}: 102 NaN or infinite voxel(s) set to the scan's smallest finite "
        "value before normalising (padding outside the field of view?)"
    ]
    filled = holed.copy()
    filled[np.isnan(holed)] = np.nanmin(holed)
    expected, _ = predict_volume(model, zscore(filled), (32, 32, 16), lcc=False)
    got = np.asarray(nib.load(str(tmp_path / "out" / "holed_pred.nii.gz")).dataobj)
    np.testing.assert_array_equal(got, expected)
    assert 0.3 < got.mean() < 0.7  # not the empty mask a NaN z-score gave
    (tmp_path / "all").mkdir()
    _save_nifti(tmp_path / "all" / "void.nii.gz", np.full((8, 8, 8), np.nan, np.float32), np.eye(4))
    code, _, err = run_cli("predict", tmp_path / "ras.pt", tmp_path / "all", "-o", tmp_path / "out_void", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "every voxel of the image is NaN or infinite" in err
    # A constant scan (blank, or a failed export) is predicted, with one line saying it holds nothing.
    _save_nifti(tmp_path / "blank.nii.gz", np.full((36, 34, 18), 5, np.int16), np.diag([0.8, 0.9, 1.5, 1.0]))
    code, _, err = run_cli("predict", tmp_path / "ras.pt", tmp_path / "blank.nii.gz", "-o", tmp_path / "out_blank", "--quiet")
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"warning: {tmp_path / 'blank.nii.gz'}: the image is constant (every voxel is 5): it holds nothing to "
        "segment; the mask written says only what the network makes of a blank"
    ]
    assert (tmp_path / "out_blank" / "blank_pred.nii.gz").is_file()


def test_score_reads_a_prediction_in_the_ground_truths_voxel_order(tmp_path, run_cli) -> None:
    """Same grid, other voxel order: moved and scored; other grids: refused, --ignore-affine only where right."""
    gt = _blob()  # x: voxels 4..11 of 20
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    flipped = affine.copy()
    flipped[0, 0] = -0.8  # x stored the other way round: voxel i lies where voxel 19 - i of gt lies
    flipped[0, 3] = 0.8 * (gt.shape[0] - 1)
    _save_nifti(tmp_path / "g" / "a.nii.gz", gt, affine)

    def scored(*extra: str) -> tuple[int, str, dict]:
        out = tmp_path / f"o{len(list((tmp_path).glob('o*')))}"
        code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", out, "--quiet", *extra)
        summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
        return code, err, summary

    # a perfect prediction written in the flipped order (with the affine that says so): Dice 1
    _save_nifti(tmp_path / "p" / "a.nii.gz", np.flip(gt, 0), flipped)
    for extra in ((), ("--ignore-affine",)):
        code, err, summary = scored(*extra)
        assert code == 0, err
        assert summary["dice"]["mean"] == 1.0 and summary["hd95"]["mean"] == 0.0 and summary["reoriented"] == 1
    # gt's array under the flipped affine lies mirrored in space: voxels 8..15 against 4..11, Dice 4/8
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt, flipped)
    code, err, summary = scored()
    assert code == 0, err
    assert summary["dice"]["mean"] == pytest.approx(0.5, abs=1e-12)
    # permuted and flipped (P, S, L storage of the same grid): moved back, Dice 1
    ras = nib.Nifti1Image(gt, affine)
    turn = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(("P", "S", "L")))
    nib.save(ras.as_reoriented(turn), str(tmp_path / "p" / "a.nii.gz"))
    code, err, summary = scored()
    assert code == 0, err
    assert summary["dice"]["mean"] == 1.0 and summary["asd"]["mean"] == 0.0

    # shifted by three voxels along x, same voxel order: refused; --ignore-affine is named and scores stored order
    shifted = affine.copy()
    shifted[0, 3] = 3 * 0.8
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt, shifted)
    code, err, _ = scored()
    assert code == 2 and err.count("\n") == 1
    assert "case 'a': prediction a.nii.gz and ground truth a.nii.gz lie on different grids in space" in err
    assert "corner 2.4 mm apart" in err and "pass --ignore-affine" in err
    code, err, summary = scored("--ignore-affine")
    assert code == 0, err
    assert summary["dice"]["mean"] == 1.0 and summary["ignore_affine"] is True and summary["reoriented"] == 0
    # flipped and shifted: the stored orders differ, so --ignore-affine would score a mirror: not suggested
    moved = flipped.copy()
    moved[0, 3] += 2.0
    _save_nifti(tmp_path / "p" / "a.nii.gz", np.flip(gt, 0), moved)
    code, err, _ = scored()
    assert code == 2 and "lie on different grids" in err and "--ignore-affine" not in err
    assert "resample the prediction onto the ground truth's grid" in err
    # float32 rounding of the same affine is not a difference
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt, affine + 1e-6)
    code, err, summary = scored()
    assert code == 0, err
    assert summary["dice"]["mean"] == 1.0 and summary["reoriented"] == 0


def test_score_with_spacing_from_a_permuted_prediction(tmp_path, run_cli) -> None:
    """--spacing-from pred reads the prediction's voxel sizes in the ground truth's axis order."""
    gt = _blob()
    pred = np.roll(gt, 2, axis=2)
    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "g" / "a.nii.gz", gt, affine)
    turn = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(("S", "R", "A")))
    nib.save(nib.Nifti1Image(pred, affine).as_reoriented(turn), str(tmp_path / "p" / "a.nii.gz"))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet",
                           "--spacing-from", "pred")
    assert code == 0, err
    row = _read_csv(tmp_path / "o" / "metrics.csv")[0]
    assert float(row["hd95"]) == pytest.approx(mb.hd95(pred, gt, (0.8, 0.9, 1.5)), abs=1e-6)
    assert float(row["hd95"]) == pytest.approx(3.0)  # two slices of 1.5 mm along z


def test_score_decides_binary_case_by_case(tmp_path, run_cli) -> None:
    """0/1 and 0/255 ground truths together are binary (not 256 classes); with label maps, refused."""
    gt = _blob()
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "g" / "a.nii.gz", gt, np.eye(4))
    _save_nifti(tmp_path / "g" / "b.nii.gz", gt * 255, np.eye(4))
    _save_nifti(tmp_path / "p" / "a.nii.gz", gt, np.eye(4))
    _save_nifti(tmp_path / "p" / "b.nii.gz", gt, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    rows = _read_csv(tmp_path / "o" / "metrics.csv")
    assert list(rows[0]) == ["case", "dice", "jaccard", "hd95", "asd", "seconds", "diagonal"]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["num_classes"] == 2 and summary["dice"]["mean"] == 1.0
    # a label map {1, 2} beside a 0/255 mask: refused in one line
    multi = gt.copy()
    multi[14:18, 2:6, 2:6] = 2
    _save_nifti(tmp_path / "g" / "c.nii.gz", multi, np.eye(4))
    _save_nifti(tmp_path / "p" / "c.nii.gz", multi, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o2", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "case 'b''s ground truth is a binary mask (object value 255) but case 'c''s holds the classes {1, 2}" in err
    # a 0/1 mask beside the {1, 2} map is a map without class 2: three classes
    (tmp_path / "g" / "b.nii.gz").unlink()
    (tmp_path / "p" / "b.nii.gz").unlink()
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o3", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert summary["num_classes"] == 3 and summary["absent_classes"] == {"1": 0, "2": 1}


def _bare_nrrd(path, array: np.ndarray) -> None:
    nrrd.write(str(path), array, {"kinds": ["domain"] * 3})  # no space, no space directions, no spacings


def test_nrrd_without_space_directions_is_scored_in_voxels(tmp_path, run_cli) -> None:
    gt = _blob()
    pred = np.roll(gt, 2, axis=2)
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _bare_nrrd(tmp_path / "g" / "a.nrrd", gt)
    _bare_nrrd(tmp_path / "p" / "a.nrrd", pred)
    code, stdout, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["distance_unit"] == "voxels" and summary["spacing"] == "voxels"
    assert summary["hd95"]["mean"] == pytest.approx(mb.hd95(pred, gt))
    assert "distances in voxels" in stdout
    # one case in mm, one in voxels: refused rather than averaged
    _save_nifti(tmp_path / "g" / "b.nii.gz", gt, np.diag([0.8, 0.8, 1.5, 1.0]))
    _save_nifti(tmp_path / "p" / "b.nii.gz", pred, np.diag([0.8, 0.8, 1.5, 1.0]))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o2", "--quiet")
    assert code == 2 and "states no voxel size" in err and "--voxels" in err and err.count("\n") == 1
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o2", "--quiet", "--voxels")
    assert code == 0, err


def test_score_measures_distances_with_the_affine_that_places_the_voxels(tmp_path, run_cli) -> None:
    """A stale pixdim (1 mm) beside an sform of 2 mm along x: the sform places the voxels, so it sizes them.

    Worked out by hand: two 6x6x6 cubes, the prediction 2 voxels further along x. Every surface voxel of
    either cube is at most 2 voxels = 4 mm from the other's surface along x, so HD95 is 4 mm (2 "mm" if
    the pixdim were used). Dice = 2 * 4/6 = 0.667 whatever the size.
    """
    gt = np.zeros((20, 16, 16), np.uint8)
    gt[4:10, 5:11, 5:11] = 1
    pred = np.roll(gt, 2, axis=0)
    for d, arr in (("p", pred), ("g", gt)):
        (tmp_path / d).mkdir()
        img = nib.Nifti1Image(arr, np.eye(4))
        img.set_sform(np.diag([2.0, 1.0, 1.0, 1.0]), code=1)
        img.set_qform(None, code=0)
        img.header.set_zooms((1.0, 1.0, 1.0))  # stale: not what the sform says
        nib.save(img, str(tmp_path / d / "a.nii.gz"))
    assert nib.load(str(tmp_path / "g" / "a.nii.gz")).header.get_zooms() == (1.0, 1.0, 1.0)
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["dice"]["mean"] == pytest.approx(2 * 4 / 12, abs=1e-9)
    assert summary["hd95"]["mean"] == pytest.approx(4.0, abs=1e-9)
    assert summary["hd95"]["mean"] == pytest.approx(
        mb.hd95(pred.astype(bool), gt.astype(bool), voxelspacing=(2.0, 1.0, 1.0)), abs=1e-9
    )


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, run_cli, checkpoint) -> None:
    """score --out and predict -o naming an existing file: one error line naming it, exit 2."""
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
        _save_nifti(tmp_path / d / "a.nii.gz", _blob(), np.eye(4))
    blocker = tmp_path / "notes.txt"
    blocker.write_text("kept")
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", blocker, "--quiet")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{blocker} is a file, not a folder" in err
    code, _, err = run_cli("predict", checkpoint, tmp_path / "p" / "a.nii.gz", "-o", blocker, "--quiet")
    assert code == 2 and "Traceback" not in err and f"{blocker} is a file, not a folder" in err, err
    assert blocker.read_text() == "kept"


def test_score_a_predict_folder_with_probability_maps(tmp_path, run_cli, checkpoint) -> None:
    # `predict --probabilities` writes <case>_prob beside <case>_pred; scoring that folder against the
    # ground truths used to stop at "prediction scan_prob.nii.gz has no ground truth"
    (tmp_path / "in").mkdir()
    (tmp_path / "gt").mkdir()
    image = np.random.default_rng(5).standard_normal((20, 24, 16)).astype(np.float32)
    _save_nifti(tmp_path / "in" / "scan.nii.gz", image, AFFINE)
    code, _, err = run_cli("predict", checkpoint, tmp_path / "in", "-o", tmp_path / "o", "--quiet", "--probabilities")
    assert code == 0, err
    mask = np.asarray(nib.load(str(tmp_path / "o" / "scan_pred.nii.gz")).dataobj)
    gt = mask.copy()
    gt[:4] = 1 - gt[:4]  # a ground truth that differs from the mask in a known slab
    _save_nifti(tmp_path / "gt" / "scan.nii.gz", gt, AFFINE)
    code, _, err = run_cli("score", tmp_path / "o", tmp_path / "gt", "--out", tmp_path / "s", "--quiet")
    assert code == 0, err
    rows = _read_csv(tmp_path / "s" / "metrics.csv")
    assert [r["case"] for r in rows] == ["scan"]
    expected = 2 * np.logical_and(mask, gt).sum() / (mask.sum() + gt.sum())
    assert float(rows[0]["dice"]) == pytest.approx(expected, abs=1e-6)
    # a scan that is itself called <x>_prob keeps its pair (its mask is <x>_prob_pred)
    (tmp_path / "gt" / "scan_prob.nii.gz").write_bytes((tmp_path / "gt" / "scan.nii.gz").read_bytes())
    (tmp_path / "o2").mkdir()
    for name in ("scan_pred.nii.gz", "scan_prob_pred.nii.gz"):
        (tmp_path / "o2" / name).write_bytes((tmp_path / "o" / "scan_pred.nii.gz").read_bytes())
    code, _, err = run_cli("score", tmp_path / "o2", tmp_path / "gt", "--out", tmp_path / "s3", "--quiet")
    assert code == 0, err
    assert [r["case"] for r in _read_csv(tmp_path / "s3" / "metrics.csv")] == ["scan", "scan_prob"]
    (tmp_path / "gt" / "scan_prob.nii.gz").unlink()
    # a _prob file without its _pred is still a prediction of its own name
    (tmp_path / "o" / "scan_pred.nii.gz").unlink()
    code, _, err = run_cli("score", tmp_path / "o", tmp_path / "gt", "--out", tmp_path / "s2", "--quiet")
    assert code == 2 and "prediction scan_prob.nii.gz has no ground truth" in err


def _without_older_note(err: str) -> str:
    """stderr less the line that says a test checkpoint has no preprocessing record."""
    return "".join(line for line in err.splitlines(keepends=True) if "has no record of its training" not in line)


def _biased_checkpoint(path, bias: float) -> None:
    """A 2-filter V-Net whose segmentation bias decides every voxel: +50 all object, -50 all background."""
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=2)
    with torch.no_grad():
        model.head_seg.bias.fill_(bias)
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]}), path)


def test_predict_into_a_folder_of_an_earlier_run_leaves_no_stale_map(tmp_path, run_cli) -> None:
    """A second run into the same -o kept the first run's _prob beside its own _pred, and said nothing of
    the first run's masks of other scans, which a score of the folder then mixed in."""
    _biased_checkpoint(tmp_path / "all.pt", 50.0)
    _biased_checkpoint(tmp_path / "none.pt", -50.0)
    (tmp_path / "in").mkdir()
    for name in ("a", "c"):
        _save_nifti(tmp_path / "in" / f"{name}.nii.gz", _scan(), AFFINE)
    out = tmp_path / "out"
    code, _, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--probabilities", "--quiet")
    assert code == 0 and _without_older_note(err) == "", err
    assert np.asarray(nib.load(str(out / "a_prob.nii.gz")).dataobj).min() > 0.99
    code, _, err = run_cli("predict", tmp_path / "none.pt", tmp_path / "in" / "a.nii.gz", "-o", out, "--quiet")
    assert code == 0, err
    assert _without_older_note(err) == (
        f"warning: {out} already holds 1 mask(s) of scans this run does not segment (c_pred.nii.gz); a score of the "
        f"folder would count them too\nwarning: removed 1 probability map(s) of an earlier run from {out} "
        "(a_prob.nii.gz): they were not of the masks now beside them (--probabilities writes this run's)\n"
    )
    assert not np.asarray(nib.load(str(out / "a_pred.nii.gz")).dataobj).any()
    assert not (out / "a_prob.nii.gz").exists()  # the all-object map of the first model is gone
    assert (out / "c_pred.nii.gz").is_file() and (out / "c_prob.nii.gz").is_file()  # not this run's: kept
    # with --probabilities the new map replaces the old one
    code, _, err = run_cli("predict", tmp_path / "none.pt", tmp_path / "in" / "c.nii.gz", "-o", out,
                           "--probabilities", "--quiet")
    assert code == 0, err
    assert "removed" not in err
    assert np.asarray(nib.load(str(out / "c_prob.nii.gz")).dataobj).max() < 0.01


def test_predict_names_the_folder_entries_it_does_not_read(tmp_path, run_cli, checkpoint) -> None:
    """A broken link, a .mha scan and a sub-folder of scans were left out of a folder without a word."""
    import os

    scans = tmp_path / "in"
    (scans / "sub").mkdir(parents=True)
    for name in ("a.nii.gz", "sub/d.nii.gz"):
        _save_nifti(scans / name, _scan(), AFFINE)
    (scans / "f.mha").write_bytes(b"ObjectType = Image\n")
    (scans / "notes.txt").write_text("not a scan")
    (scans / "empty").mkdir()
    (scans / "masks").mkdir()  # an earlier -o inside the input folder: outputs, not scans
    _save_nifti(scans / "masks" / "a_pred.nii.gz", np.zeros((4, 4, 4), np.uint8), AFFINE)
    (scans / "series").mkdir()  # a DICOM series
    (scans / "series" / "IM0001.dcm").write_bytes(b"DICM")
    os.symlink(tmp_path / "missing.nii.gz", scans / "c.nii.gz")
    out = tmp_path / "out"
    # the folder and a file in it: the file is taken once, not refused as two inputs of one name
    code, stdout, err = run_cli("predict", checkpoint, scans, scans / "a.nii.gz", "-o", out, "--quiet")
    assert code == 0, err
    assert _without_older_note(err) == (
        "warning: left out 4 entries of the input folder(s) that canet does not read: c.nii.gz (a broken link), "
        "f.mha (not a NIfTI, NRRD or HDF5 file), series (a sub-folder: its files are not searched) and 1 more\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["a_pred.nii.gz", "predict.json"]
    # nothing readable at all: the error says what was there
    (scans / "a.nii.gz").unlink()
    code, _, err = run_cli("predict", checkpoint, scans, "-o", tmp_path / "o3", "--quiet")
    assert code == 2 and err.startswith("error: no NIfTI, NRRD or HDF5 files matched ") and err.count("\n") == 1
    assert ("(left out: c.nii.gz (a broken link), f.mha (not a NIfTI, NRRD or HDF5 file), series (a sub-folder: "
            "its files are not searched) and 1 more)") in err


def test_predict_refuses_names_that_differ_only_in_letter_case_where_they_are_one(
    tmp_path, run_cli, checkpoint, monkeypatch
) -> None:
    """siteA/Case1 and siteB/case1 write one file on macOS's and Windows' file systems: the second replaced
    the first while the run said it wrote two masks. Where the names are two files (here), both are written."""
    from canet.evaluation import prediction

    for site, name in (("siteA", "Case1"), ("siteB", "case1")):
        (tmp_path / site).mkdir()
        _save_nifti(tmp_path / site / f"{name}.nii.gz", _scan(), AFFINE)
    assert prediction.ignores_letter_case(tmp_path / "o" / "deeper") is False  # this file system tells them apart
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".canet")] == []  # the probe is gone
    code, _, err = run_cli("predict", checkpoint, tmp_path / "siteA", tmp_path / "siteB", "-o", tmp_path / "o",
                           "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["Case1_pred.nii.gz", "case1_pred.nii.gz", "predict.json"]
    monkeypatch.setattr(prediction, "ignores_letter_case", lambda folder: True)  # as on macOS
    code, _, err = run_cli("predict", checkpoint, tmp_path / "siteA", tmp_path / "siteB", "-o", tmp_path / "o2")
    assert code == 2 and not (tmp_path / "o2").exists()
    assert err == (f"error: two inputs would write output names that differ only in letter case, which the file "
                   f"system of {tmp_path / 'o2'} takes for one name: {tmp_path / 'siteA' / 'Case1.nii.gz'} and "
                   f"{tmp_path / 'siteB' / 'case1.nii.gz'}\n")


def test_predict_takes_two_links_of_one_scan_as_two_inputs(tmp_path, run_cli, checkpoint) -> None:
    """Links of one stored scan (a symlink farm, git-annex) are two cases; the same path named twice is one."""
    import os

    _save_nifti(tmp_path / "store.nii.gz", _scan(), AFFINE)
    (tmp_path / "in").mkdir()
    for name in ("caseA", "caseB"):
        os.symlink(tmp_path / "store.nii.gz", tmp_path / "in" / f"{name}.nii.gz")
    code, _, err = run_cli("predict", checkpoint, tmp_path / "in", tmp_path / "in" / "caseA.nii.gz", "-o",
                           tmp_path / "o", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["caseA_pred.nii.gz", "caseB_pred.nii.gz", "predict.json"]


def test_score_one_folder_refuses_two_files_of_one_case_and_reads_any_letter_case(tmp_path, run_cli) -> None:
    """One-folder mode kept the last of a_pred.nii.gz and a_pred.nrrd (here the empty one: Dice 0, exit 0),
    and dropped b_Pred / b_GT from the mean without a word."""
    rng = np.random.default_rng(5)
    pred, gt = _blob_pair(rng, (30, 28, 20))
    folder = tmp_path / "one"
    folder.mkdir()
    _save_nifti(folder / "a_pred.nii.gz", gt, np.eye(4))
    nrrd.write(str(folder / "a_pred.nrrd"), np.zeros_like(gt))
    _save_nifti(folder / "a_gt.nii.gz", gt, np.eye(4))
    code, _, err = run_cli("score", folder, "--out", tmp_path / "s1")
    assert code == 2
    assert err == f"error: two files in {folder} stand for case 'a': a_pred.nii.gz, a_pred.nrrd\n"
    (folder / "a_pred.nrrd").unlink()
    _save_nifti(folder / "b_Pred.nii.gz", pred, np.eye(4))
    _save_nifti(folder / "b_GT.nii.gz", gt, np.eye(4))
    code, _, err = run_cli("score", folder, "--out", tmp_path / "s2", "--voxels")
    assert code == 0, err
    rows = {r["case"]: r for r in _read_csv(tmp_path / "s2" / "metrics.csv")}
    assert sorted(rows) == ["a", "b"]
    assert float(rows["a"]["dice"]) == 1.0
    assert float(rows["b"]["dice"]) == pytest.approx(mb.dc(pred, gt))


def test_score_two_folders_read_pred_and_gt_endings_in_any_letter_case(tmp_path, run_cli) -> None:
    """a_PRED beside a_GT: the endings are stripped in any letter case, as in one-folder mode."""
    pred, gt = _blob_pair(np.random.default_rng(6), (30, 28, 20))
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "p" / "a_PRED.nii.gz", pred, np.eye(4))
    _save_nifti(tmp_path / "g" / "a_GT.nii.gz", gt, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "s", "--voxels")
    assert code == 0, err
    (row,) = _read_csv(tmp_path / "s" / "metrics.csv")
    assert row["case"] == "a" and float(row["dice"]) == pytest.approx(mb.dc(pred, gt))


def test_predict_resume_keeps_what_a_killed_run_wrote_with_the_same_checkpoint(tmp_path, run_cli, monkeypatch) -> None:
    """A predict killed half-way kept its finished masks, but the same command redid every scan; --resume
    segments only the rest, and only when predict.json says the masks are of this checkpoint and settings."""
    from canet.evaluation import prediction

    _biased_checkpoint(tmp_path / "all.pt", 50.0)
    _biased_checkpoint(tmp_path / "none.pt", -50.0)
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        _save_nifti(tmp_path / "in" / f"{name}.nii.gz", _scan(), AFFINE)
    out = tmp_path / "out"
    # an older run with other weights segmented all three: c's mask stays its until segmented again
    code, _, err = run_cli("predict", tmp_path / "none.pt", tmp_path / "in", "-o", out, "--quiet")
    assert code == 0, err
    calls: list[str] = []
    real = prediction.predict_oriented

    def killed_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(prediction, "predict_oriented", killed_after_two)
    code, _, _ = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--quiet")
    assert code == 130
    record = json.loads((out / "predict.json").read_text())
    assert record["probabilities"] is False and len(record["checkpoint_sha256"]) == 64
    assert sorted(record["finished"]) == ["a", "b"]  # not c, whose mask is still the older run's
    assert all(record["finished"][n] == file_sha256(tmp_path / "in" / f"{n}.nii.gz") for n in ("a", "b"))
    kept = {n: (out / n).stat().st_mtime_ns for n in ("a_pred.nii.gz", "b_pred.nii.gz")}
    calls.clear()
    monkeypatch.setattr(prediction, "predict_oriented", lambda *a, **k: calls.append("x") or real(*a, **k))
    # another checkpoint, other settings or --probabilities: the kept masks would not be this run's
    for extra, said in (((tmp_path / "none.pt",), "another checkpoint"),
                        ((tmp_path / "all.pt", "--mode", "reference"), "other inference settings"),
                        ((tmp_path / "all.pt", "--probabilities"), "another --probabilities choice")):
        code, _, err = run_cli("predict", *extra[:1], tmp_path / "in", "-o", out, "--resume", "--quiet", *extra[1:])
        err = _without_older_note(err)
        assert code == 2 and err.count("\n") == 1 and f"were made with {said}; run without --resume" in err, err
    assert calls == []
    code, stdout, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--resume", "--quiet")
    assert code == 0, err
    assert "kept 2 mask(s)" in err and "segmenting the other 1" in err and "wrote 1 mask(s)" in stdout
    assert calls == ["x"] and np.asarray(nib.load(str(out / "c_pred.nii.gz")).dataobj).all()  # this model's
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # not written again
    code, _, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", tmp_path / "fresh", "--resume")
    assert code == 2 and "holds no predict.json of an earlier predict run" in err


def test_predict_resume_segments_again_a_scan_replaced_under_the_same_name(tmp_path, run_cli, monkeypatch) -> None:
    """--resume kept a mask by the scan's name: a scan replaced by another file of that name (a corrected
    export, another patient) kept the first file's mask. The record now holds each scan's SHA-256."""
    from canet.evaluation import prediction

    _biased_checkpoint(tmp_path / "all.pt", 50.0)
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        _save_nifti(tmp_path / "in" / f"{name}.nii.gz", _scan(), AFFINE)
    out = tmp_path / "out"
    code, _, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--quiet")
    assert code == 0, err
    assert nib.load(str(out / "b_pred.nii.gz")).shape == (36, 34, 20)
    _save_nifti(tmp_path / "in" / "b.nii.gz", _scan((30, 28, 18)), AFFINE)  # another scan under b's name
    calls: list[str] = []
    real = prediction.predict_oriented
    monkeypatch.setattr(prediction, "predict_oriented", lambda *a, **k: calls.append("x") or real(*a, **k))
    code, stdout, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--resume", "--quiet")
    assert code == 0, err
    assert "1 scan(s) are not the files the earlier run segmented under their names (b.nii.gz)" in err, err
    assert "kept 1 mask(s)" in err and calls == ["x"] and "wrote 1 mask(s)" in stdout
    assert nib.load(str(out / "b_pred.nii.gz")).shape == (30, 28, 18)  # the new file's mask, not the old one
    record = json.loads((out / "predict.json").read_text())
    assert record["finished"]["b"] == file_sha256(tmp_path / "in" / "b.nii.gz")
    # a record of the earlier format (names only) keeps nothing: which file each mask came from is unknown
    record["finished"] = ["a", "b"]
    (out / "predict.json").write_text(json.dumps(record))
    calls.clear()
    code, _, err = run_cli("predict", tmp_path / "all.pt", tmp_path / "in", "-o", out, "--resume", "--quiet")
    assert code == 0, err
    assert "does not say which files its 2 mask(s) were made from" in err and calls == ["x", "x"]


def test_score_refuses_a_broken_link_named_like_a_mask(tmp_path, run_cli) -> None:
    """A broken link pred/c.nii.gz was skipped without a word when gt/ had no c (and, when it had, the
    message said only that c had no prediction)."""
    pred, gt = _blob_pair(np.random.default_rng(7), (30, 28, 20))
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "p" / "a.nii.gz", pred, np.eye(4))
    _save_nifti(tmp_path / "g" / "a.nii.gz", gt, np.eye(4))
    (tmp_path / "p" / "c.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "s")
    assert code == 2
    assert err == f"error: {tmp_path / 'p' / 'c.nii.gz'} is a broken link (its target {tmp_path / 'gone.nii.gz'} " \
                  "does not exist)\n"
    (tmp_path / "p" / "c.nii.gz").rename(tmp_path / "p" / "c_gt.nii.gz")  # one-folder mode too
    (tmp_path / "g" / "a.nii.gz").rename(tmp_path / "p" / "a_gt.nii.gz")
    (tmp_path / "p" / "a.nii.gz").rename(tmp_path / "p" / "a_pred.nii.gz")
    code, _, err = run_cli("score", tmp_path / "p", "--out", tmp_path / "s1")
    assert code == 2 and "c_gt.nii.gz is a broken link" in err, err
    (tmp_path / "p" / "c_gt.nii.gz").unlink()
    code, _, err = run_cli("score", tmp_path / "p", "--out", tmp_path / "s2", "--voxels")
    assert code == 0, err
