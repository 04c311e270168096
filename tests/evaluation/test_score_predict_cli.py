"""`canet score` and `canet predict` through the real CLI entry point, checked against medpy."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
from medpy.metric import binary as mb

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.cli import main as cli_main
from canet.models import create_model


@pytest.fixture()
def run_cli(monkeypatch, capsys):
    """Call canet's real main() with only this area's commands registered."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("eval_cmds",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


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
    assert list(rows[0]) == ["case", "dice", "jaccard", "hd95", "asd", "seconds"]
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
    for d in ("p", "g"):
        (tmp_path / d).mkdir()
    _save_nifti(tmp_path / "p" / "x_pred.nii.gz", pred, np.eye(4))
    _save_nifti(tmp_path / "g" / "x_gt.nii.gz", gt, np.eye(4))
    code, _, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o", "--quiet")
    assert code == 0, err
    row = _read_csv(tmp_path / "o" / "metrics.csv")[0]
    assert row["case"] == "x"
    for c in (1, 2):
        assert float(row[f"dice_{c}"]) == pytest.approx(mb.dc(pred == c, gt == c))
        assert float(row[f"hd95_{c}"]) == pytest.approx(mb.hd95(pred == c, gt == c))
    assert "per_class" in json.loads((tmp_path / "o" / "summary.json").read_text())


def test_score_bad_inputs_end_in_one_line(tmp_path, run_cli) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    code, out, err = run_cli("score", tmp_path / "p", tmp_path / "g", "--out", tmp_path / "o")
    assert code == 2 and err.startswith("error: no NIfTI or NRRD files matched") and err.count("\n") == 1
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


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=2)
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]}), path)
    return path


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
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    code, _, err = run_cli("predict", tmp_path / "foreign.pt", tmp_path / "ok.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "is not a canet checkpoint" in err and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("predict", checkpoint, tmp_path / "empty", "-o", tmp_path / "o")
    assert code == 2 and "no NIfTI or NRRD files matched" in err
    code, _, err = run_cli("predict", checkpoint, tmp_path / "missing.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "input not found" in err


def test_checkpoint_settings_sources() -> None:
    from canet.evaluation import checkpoint_settings

    assert checkpoint_settings({"model": {"kwargs": {}}, "config": None})["patch_size"] == (112, 112, 80)
    assert checkpoint_settings({"model": {"kwargs": {"patch_size": [64, 64, 32]}}})["patch_size"] == (64, 64, 32)
    nested = {"model": {"kwargs": {"patch_size": [64, 64, 32], "num_classes": 3}}, "config": {"data": {"patch_size": [96, 96, 48], "normalize": False}}}
    s = checkpoint_settings(nested)
    assert s == {"patch_size": (96, 96, 48), "num_classes": 3, "normalize": False}
    assert math.isclose(1.0, 1.0)
