"""A killed evaluation resumes: cases already scored are kept, the rest predicted, the same results."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import canet.evaluation.evaluator as evaluation
from canet.errors import CanetError
from canet.evaluation import evaluate_model
from canet.metrics.journal import JOURNAL_FILE


class Threshold(nn.Module):
    """Logits = 8 * (x - 0.5): predicts x > 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.w * (x - 0.5)


def _volumes(n: int = 4, shape=(30, 26, 18)) -> list[SimpleNamespace]:
    rng = np.random.default_rng(0)
    vols = []
    for i in range(n):
        label = np.zeros(shape, np.uint8)
        label[6:20, 5:18, 4:14] = 1
        if i == 2:
            label[:] = 0  # an empty ground truth: its flags must survive the journal too
        image = label.astype(np.float32) + rng.normal(0, 0.25 + 0.1 * i, shape).astype(np.float32)
        vols.append(SimpleNamespace(case_id=f"case{i}", image=image, label=label,
                                    affine=np.diag([0.9, 0.8, 1.5, 1.0]), spacing=(0.9, 0.8, 1.5)))
    return vols


class Killed(Exception):
    pass


def _dies_after(vols: list, n: int):
    for k, vol in enumerate(vols):
        if k == n:
            raise Killed
        yield vol


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.fixture()
def counted(monkeypatch):
    """The case ids predicted (by evaluation.predict_oriented) during the test."""
    seen: list[int] = []
    real = evaluation.predict_oriented

    def spy(*args, **kwargs):
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "predict_oriented", spy)
    return seen


def _evaluate(vols, out, **kw):
    return evaluate_model(Threshold(), vols, (16, 16, 8), out_dir=out, mode="fast", spacing="mm", **kw)


def _ctrl_c_after(vols: list, n: int):
    for k, vol in enumerate(vols):
        if k == n:
            raise KeyboardInterrupt
        yield vol


def test_ctrl_c_says_how_many_cases_are_kept(tmp_path, counted) -> None:
    out = tmp_path / "eval"
    with pytest.raises(KeyboardInterrupt) as info:
        _evaluate(_ctrl_c_after(_volumes(), 2), out)
    assert str(info.value) == f"2 case(s) scored are kept in {out}; the same command with --resume goes on from them"
    counted.clear()
    _evaluate(_volumes(), out, resume=True)
    assert len(counted) == 2  # as said: the two kept cases are not predicted again
    with pytest.raises(KeyboardInterrupt) as info:  # without a folder nothing is kept: nothing to add
        evaluate_model(Threshold(), _ctrl_c_after(_volumes(), 1), (16, 16, 8), mode="fast", spacing="mm")
    assert str(info.value) == ""


def test_resume_keeps_scored_cases_and_gives_the_uninterrupted_results(tmp_path, counted) -> None:
    vols = _volumes()
    whole = _evaluate(vols, tmp_path / "whole")
    assert len((tmp_path / "whole" / JOURNAL_FILE).read_text().splitlines()) == 1 + 4  # kept when done
    counted.clear()

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        _evaluate(_dies_after(vols, 3), out)
    assert len(counted) == 3 and not (out / "summary.json").exists()
    assert len((out / JOURNAL_FILE).read_text().splitlines()) == 1 + 3  # header + three cases

    counted.clear()
    resumed = _evaluate(vols, out, resume=True)
    assert len(counted) == 1  # only case3 was predicted again
    assert _rows(out / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")
    for key in ("dice", "jaccard", "hd95", "asd"):
        assert resumed[key] == whole[key]
    assert resumed["empty_gt"] == whole["empty_gt"] == 1
    assert resumed["absent_classes"] == whole["absent_classes"]

    # resuming a finished evaluation predicts nothing and writes the same results
    counted.clear()
    (out / "metrics.csv").unlink()
    again = _evaluate(vols, out, resume=True)
    assert counted == []
    assert _rows(out / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")
    for key in ("dice", "jaccard", "hd95", "asd", "empty_gt", "absent_classes"):
        assert again[key] == whole[key]


def test_a_resumed_evaluation_writes_the_same_summary_with_its_warnings(tmp_path, counted) -> None:
    vols = _volumes()
    vols[1].nonfinite = 5  # a case with a warning: it must survive the journal
    whole = json.loads(json.dumps(_evaluate(vols, tmp_path / "e")["warnings"]))
    assert len(whole) == 1 and "case 'case1'" in whole[0]
    first = json.loads((tmp_path / "e" / "summary.json").read_text())
    counted.clear()
    _evaluate(vols, tmp_path / "e", resume=True, warn=lambda m: None)
    assert counted == []
    assert json.loads((tmp_path / "e" / "summary.json").read_text()) == first  # warnings and all


def test_a_line_cut_short_by_the_kill_is_predicted_again(tmp_path, counted) -> None:
    vols = _volumes()
    out = tmp_path / "eval"
    with pytest.raises(Killed):
        _evaluate(_dies_after(vols, 2), out)
    journal = out / JOURNAL_FILE
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    counted.clear()
    _evaluate(vols, out, resume=True)
    assert len(counted) == 3  # case1 (cut short), case2 and case3


def test_without_resume_every_case_is_predicted(tmp_path, counted) -> None:
    vols = _volumes()
    out = tmp_path / "eval"
    with pytest.raises(Killed):
        _evaluate(_dies_after(vols, 2), out)
    counted.clear()
    _evaluate(vols, out)
    assert len(counted) == 4


def test_resume_with_other_settings_is_refused(tmp_path) -> None:
    vols = _volumes()
    out = tmp_path / "eval"
    with pytest.raises(Killed):
        _evaluate(_dies_after(vols, 2), out)
    with pytest.raises(CanetError, match="other settings.*settings") as info:
        evaluate_model(Threshold(), vols, (16, 16, 8), out_dir=out, mode="reference", spacing="mm", resume=True)
    assert "\n" not in str(info.value)
    header = json.loads((out / JOURNAL_FILE).read_text().splitlines()[0])
    assert header["settings"]["mode"] == "fast"  # the refused call left the journal alone


def test_cli_refuses_the_relu_rule_outside_reference_mode(tmp_path, run_cli) -> None:
    code, out, err = run_cli("evaluate", tmp_path / "x.pt", "--data", tmp_path, "--out", tmp_path / "e",
                             "--decision", "relu", "--mode", "fast")
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "reference" in lines[0] and "Traceback" not in err


def test_resume_refuses_cases_scored_with_other_weights_under_the_same_path(tmp_path, monkeypatch) -> None:
    """A run that trains on rewrites its last.pt: the cases scored before belong to the old weights."""
    import nibabel as nib

    from canet.checkpoint import make_checkpoint, save_checkpoint
    from canet.evaluation import evaluate
    from canet.models import create_model

    entries = []
    for i in range(3):
        label = np.zeros((32, 32, 16), np.uint8)
        label[8:22, 9:24, 4:12] = 1
        image = label + np.random.default_rng(i).normal(0, 0.3, label.shape).astype(np.float32)
        for name, arr in ((f"img{i}.nii.gz", image), (f"lab{i}.nii.gz", label)):
            nib.save(nib.Nifti1Image(arr, np.diag([0.8, 0.8, 1.5, 1.0])), str(tmp_path / name))
        entries.append({"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz"})
    data = tmp_path / "dataset.json"
    data.write_text(json.dumps({"training": entries, "test": entries}))

    def weights(seed: int) -> dict:
        torch.manual_seed(seed)
        return make_checkpoint(create_model("vnet", n_filters=2), "tests", config={"patch_size": [32, 32, 16]})

    ckpt, out = tmp_path / "last.pt", tmp_path / "eval"
    save_checkpoint(weights(0), ckpt)
    first = ckpt.read_bytes()
    real = evaluation.predict_oriented
    calls: list[int] = []

    def dies_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "predict_oriented", dies_on_the_second)
    with pytest.raises(Killed):
        evaluate(ckpt, data, out_dir=out, progress=False)
    monkeypatch.setattr(evaluation, "predict_oriented", real)
    assert len((out / JOURNAL_FILE).read_text().splitlines()) == 2  # header + case img0

    save_checkpoint(weights(1), ckpt)  # training went on: other weights, same path
    with pytest.raises(CanetError) as info:
        evaluate(ckpt, data, out_dir=out, progress=False, resume=True)
    assert "other settings (extra.checkpoint_sha256 differ)" in str(info.value) and "\n" not in str(info.value)

    ckpt.write_bytes(first)  # the file the journal was written with: resumed
    summary = evaluate(ckpt, data, out_dir=out, progress=False, resume=True)
    assert summary["cases"] == 3 and len(summary["checkpoint_sha256"]) == 64
