"""Evaluation folders and run folders are kept apart, and a fresh evaluation never leaves old results beside new ones."""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from canet.errors import CanetError, DataError
from canet.evaluation import evaluate_model


class Threshold(nn.Module):
    """Logits = 8 * (x - t): predicts x > t."""

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(t))

    def forward(self, x: Tensor) -> Tensor:
        return 8 * (x - self.t)


def _volumes(n: int = 3) -> list[SimpleNamespace]:
    rng = np.random.default_rng(0)
    vols = []
    for i in range(n):
        label = np.zeros((24, 20, 16), np.uint8)
        label[5:18, 4:15, 3:12] = 1
        image = label + rng.normal(0, 0.3, label.shape).astype(np.float32)
        vols.append(SimpleNamespace(case_id=f"c{i}", image=image, label=label, affine=np.eye(4), spacing=(1, 1, 1)))
    return vols


def _evaluate(out, t: float = 0.5, **kw):
    return evaluate_model(Threshold(t), _volumes(), (16, 16, 16), out_dir=out, mode="fast", spacing="mm", **kw)


def test_an_evaluation_into_a_run_folder_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: vnet\n")
    (run / "metrics.csv").write_text("iteration,loss\n1,0.5\n")  # the run's loss log
    with pytest.raises(DataError, match=r"is a training run folder .* e\.g\. .*run/eval$"):
        _evaluate(run)
    assert (run / "metrics.csv").read_text() == "iteration,loss\n1,0.5\n"


def test_a_fresh_evaluation_removes_the_results_of_the_last_one(tmp_path) -> None:
    out = tmp_path / "eval"
    first = _evaluate(out, report=True)
    assert (out / "report.html").is_file() and len(list((out / "report_slices").glob("*.npz"))) == 3
    second = _evaluate(out, t=0.9)  # other weights, no report
    assert second["dice"]["mean"] != first["dice"]["mean"]
    assert not (out / "report.html").exists() and not (out / "report_slices").exists()  # it described the first
    assert json.loads((out / "summary.json").read_text())["dice"]["mean"] == second["dice"]["mean"]

    class Killed(Exception):
        pass

    def dies(vols):
        yield vols[0]
        raise Killed

    def dies_at_once(vols):
        raise Killed
        yield vols[0]

    kept = (out / "summary.json").read_text()
    with pytest.raises(Killed):  # killed before its first case: the last evaluation's results stay whole
        evaluate_model(Threshold(0.2), dies_at_once(_volumes()), (16, 16, 16), out_dir=out, mode="fast", spacing="mm")
    assert (out / "summary.json").read_text() == kept and (out / "metrics.csv").is_file()
    with pytest.raises(Killed):  # a new evaluation killed after one case: no summary of the old one is left
        evaluate_model(Threshold(0.2), dies(_volumes()), (16, 16, 16), out_dir=out, mode="fast", spacing="mm")
    assert not (out / "summary.json").exists() and not (out / "metrics.csv").exists()


def test_a_fresh_evaluation_removes_the_masks_of_the_last_one(tmp_path) -> None:
    # the first evaluation saved its masks; the second (other weights, no --save-predictions) must not
    # leave them beside its own metrics as if they were its predictions
    out = tmp_path / "eval"
    _evaluate(out, save_predictions=True)
    (out / "mine_pred.nii.gz").write_bytes(b"not canet's")  # a case the last evaluation did not list
    assert len(list(out.glob("c*_pred.nii.gz"))) == 3
    old_voxels = nib.load(out / "c0_pred.nii.gz").get_fdata().sum()
    _evaluate(out, t=0.9)
    assert sorted(p.name for p in out.glob("*_pred.nii.gz")) == ["mine_pred.nii.gz"]
    # saved again: the new evaluation's masks, of its own weights (t = 0.9 keeps fewer voxels)
    _evaluate(out, t=0.9, save_predictions=True)
    assert nib.load(out / "c0_pred.nii.gz").get_fdata().sum() < old_voxels

    class Killed(Exception):
        pass

    def dies(vols):
        yield from vols[:2]
        raise Killed

    with pytest.raises(Killed):  # two masks saved, no metrics.csv yet: the journal still lists them
        evaluate_model(Threshold(0.5), dies(_volumes()), (16, 16, 16), out_dir=out, mode="fast", spacing="mm",
                       save_predictions=True)
    # the evaluation before lost its three once this one scored its first case; c0, c1 are this one's
    assert sorted(p.name for p in out.glob("c*_pred.nii.gz")) == ["c0_pred.nii.gz", "c1_pred.nii.gz"]
    _evaluate(out, t=0.9)
    assert sorted(p.name for p in out.glob("*_pred.nii.gz")) == ["mine_pred.nii.gz"]


def test_masks_of_other_origin_are_never_removed(tmp_path, run_cli) -> None:
    # an evaluation without --save-predictions in a folder holding canet predict's outputs, and canet
    # score run twice on a folder of <case>_pred / <case>_gt pairs: no mask there was saved by an evaluation
    out = tmp_path / "eval"
    out.mkdir()
    for case in ("c0", "c1"):
        (out / f"{case}_pred.nii.gz").write_bytes(b"from canet predict")
    _evaluate(out)
    _evaluate(out, t=0.9)
    assert sorted(p.name for p in out.glob("*_pred.nii.gz")) == ["c0_pred.nii.gz", "c1_pred.nii.gz"]
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    mask = np.zeros((12, 12, 8), np.uint8)
    mask[3:8, 3:8, 2:6] = 1
    for case in ("a", "b"):
        for suffix in ("pred", "gt"):
            nib.save(nib.Nifti1Image(mask, np.eye(4)), str(pairs / f"{case}_{suffix}.nii.gz"))
    for _ in range(3):
        code, _, err = run_cli("score", pairs, "--out", pairs, "--quiet")
        assert code == 0, err
    assert len(list(pairs.glob("*_pred.nii.gz"))) == 2


def test_resume_refuses_to_leave_kept_cases_without_their_files(tmp_path) -> None:
    out = tmp_path / "eval"
    _evaluate(out)
    with pytest.raises(CanetError, match=r"other settings \(save_predictions differ\)"):
        _evaluate(out, resume=True, save_predictions=True)  # the kept cases have no masks to save
    _evaluate(out, save_predictions=True)
    assert sorted(p.name for p in out.glob("*_pred.nii.gz")) == ["c0_pred.nii.gz", "c1_pred.nii.gz", "c2_pred.nii.gz"]
    _evaluate(out, resume=True, save_predictions=True)  # the same flags: resumed


def test_score_refuses_one_folder_as_both_sides(tmp_path, run_cli) -> None:
    gts = tmp_path / "g"
    gts.mkdir()
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(gts / "a.nii.gz"))
    code, _, err = run_cli("score", gts, gts, "--out", tmp_path / "s", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "the predictions and the ground truths are the same folder" in err
    code, _, err = run_cli("score", gts / ".." / "g", gts, "--out", tmp_path / "s", "--quiet")  # spelt otherwise
    assert code == 2 and "same folder" in err
