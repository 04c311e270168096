"""`canet evaluate --split labeled/unlabeled` scores the cases the checkpoint's run took as labeled/unlabeled."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.data import write_synthetic_dataset
from canet.evaluation import evaluate
from canet.models import create_model


@pytest.fixture()
def trained_on(tmp_path):
    root = write_synthetic_dataset(tmp_path / "LA", n_train=5, n_test=1, seed=2, shape=(32, 32, 32))
    torch.manual_seed(0)
    config = {"data": {"root": str(root), "labeled": 2, "patch_size": [32, 32, 32]}}
    path = tmp_path / "run.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=2), "tests", config=config), path)
    return root, path


def _cases(folder) -> list[str]:
    with open(folder / "metrics.csv", newline="") as fh:
        return [row["case"] for row in csv.DictReader(fh)]


def test_labeled_and_unlabeled_splits_are_the_runs(trained_on, tmp_path) -> None:
    root, ckpt = trained_on
    ids = (root / "train.list").read_text().split()
    messages: list[str] = []
    evaluate(ckpt, root, split="labeled", out_dir=tmp_path / "l", progress=False, warn=messages.append)
    evaluate(ckpt, root, split="unlabeled", out_dir=tmp_path / "u", progress=False, warn=messages.append)
    assert _cases(tmp_path / "l") == ids[:2]  # the run's data.labeled: 2, not all 5 training cases
    assert _cases(tmp_path / "u") == ids[2:]  # the split used to be empty (refused)
    assert not [m for m in messages if "took the first" in m]


def test_elsewhere_the_datasets_own_split_is_used_with_a_warning(trained_on, tmp_path) -> None:
    root, ckpt = trained_on
    moved = shutil.copytree(root, tmp_path / "copy")
    messages: list[str] = []
    evaluate(ckpt, moved, split="labeled", out_dir=tmp_path / "l", progress=False, warn=messages.append)
    assert len(_cases(tmp_path / "l")) == 5
    assert [m for m in messages if "took the first 2 training cases" in m and "is not that data" in m]


def test_spacing_mm_on_la_volumes_is_refused(trained_on, tmp_path) -> None:
    from canet.errors import DataError

    root, ckpt = trained_on
    with pytest.raises(DataError, match=r"^--spacing mm: the LA volumes of .* state no voxel size"):
        evaluate(ckpt, root, spacing="mm", out_dir=tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()


def test_a_split_with_cases_without_labels_is_refused_before_any_prediction(trained_on, tmp_path) -> None:
    """The bare case used to be found after the cases before it had been predicted and scored."""
    import json

    from canet.data import LA_CASES_DIR, LA_FILE_NAME
    from canet.errors import DataError

    root, ckpt = trained_on
    h5 = [str(root / LA_CASES_DIR / i / LA_FILE_NAME) for i in (root / "train.list").read_text().split()]
    datalist = tmp_path / "dataset.json"
    datalist.write_text(json.dumps({
        "normalize": False, "training": [{"image": h5[0], "label": h5[0]}],
        "test": [{"image": h5[1], "label": h5[1], "id": "scored"}, {"image": h5[2], "id": "bare"}],
    }))
    with pytest.raises(DataError, match=rf"^1 of the 2 cases of split 'test' of {datalist} has no label "
                                        r"\('bare'\); evaluation needs ground truth \(canet predict segments "
                                        r"scans without one\)$"):
        evaluate(ckpt, datalist, out_dir=tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()  # nothing predicted
    evaluate(ckpt, datalist, out_dir=tmp_path / "e", progress=False, max_cases=1)  # the labeled one alone
    assert _cases(tmp_path / "e") == ["scored"]


def test_the_summary_records_the_iteration_of_the_checkpoint_scored(trained_on, tmp_path) -> None:
    """last.pt is rewritten as a run goes on; the summary (and the report) say which iteration was scored."""
    import json

    from canet.checkpoint import load_checkpoint

    root, ckpt = trained_on
    assert evaluate(ckpt, root, out_dir=tmp_path / "e0", progress=False)["checkpoint_iteration"] is None
    payload = load_checkpoint(ckpt)
    payload["iteration"] = 1234
    save_checkpoint(payload, tmp_path / "at1234.pt")
    summary = evaluate(tmp_path / "at1234.pt", root, out_dir=tmp_path / "e1", progress=False)
    assert summary["checkpoint_iteration"] == 1234
    # not in the case journal's header: a journal written before the key existed still resumes
    header = json.loads((tmp_path / "e1" / "cases.jsonl").read_text().splitlines()[0])
    assert "checkpoint_iteration" not in json.dumps(header) and header["extra"]["checkpoint_sha256"]
    again = evaluate(tmp_path / "at1234.pt", root, out_dir=tmp_path / "e1", progress=False, resume=True)
    assert again["dice"] == summary["dice"] and again["checkpoint_iteration"] == 1234


def test_resume_scores_again_a_case_whose_files_changed(trained_on, tmp_path, monkeypatch) -> None:
    """--resume kept a case's row by its id: a label (or image) corrected since, or a datalist entry that
    now points at other files, kept the old score without a word. Each case's files' SHA-256 is journaled."""
    import json

    import canet.evaluation.evaluator as evaluator
    from canet.data import LA_CASES_DIR, LA_FILE_NAME

    root, ckpt = trained_on
    test_id = (root / "test.list").read_text().split()[0]
    first_train = (root / "train.list").read_text().split()[0]
    evaluate(ckpt, root, out_dir=tmp_path / "e", progress=False)
    entry = json.loads((tmp_path / "e" / "cases.jsonl").read_text().splitlines()[1])
    assert len(entry["fingerprint"]) == 64  # an LA case: image and label in one file
    # the test case's file is replaced by another scan and its label
    shutil.copyfile(root / LA_CASES_DIR / first_train / LA_FILE_NAME, root / LA_CASES_DIR / test_id / LA_FILE_NAME)
    predicted: list[str] = []
    real = evaluator.predict_oriented
    monkeypatch.setattr(evaluator, "predict_oriented", lambda *a, **k: predicted.append("x") or real(*a, **k))
    messages: list[str] = []
    resumed = evaluate(ckpt, root, out_dir=tmp_path / "e", progress=False, resume=True, warn=messages.append)
    assert f"case {test_id!r}: its image or label file has changed since it was scored; scored again (--resume)" \
        in messages and predicted == ["x"]
    fresh = evaluate(ckpt, root, out_dir=tmp_path / "fresh", progress=False)
    assert resumed["rows"][0]["dice"] == fresh["rows"][0]["dice"]
    again = evaluate(ckpt, root, out_dir=tmp_path / "e", progress=False, resume=True, warn=messages.append)
    assert predicted == ["x", "x"] and again["rows"][0]["dice"] == fresh["rows"][0]["dice"]  # kept: unchanged
    # a journal written before fingerprints keeps its cases as before (nothing to compare them with)
    lines = (tmp_path / "e" / "cases.jsonl").read_text().splitlines()
    old = [lines[0], *(json.dumps({k: v for k, v in json.loads(x).items() if k != "fingerprint"}) for x in lines[1:])]
    (tmp_path / "e" / "cases.jsonl").write_text("\n".join(old) + "\n")
    shutil.copyfile(root / LA_CASES_DIR / (root / "train.list").read_text().split()[1] / LA_FILE_NAME,
                    root / LA_CASES_DIR / test_id / LA_FILE_NAME)
    evaluate(ckpt, root, out_dir=tmp_path / "e", progress=False, resume=True)
    assert predicted == ["x", "x"]


def test_binary_labels_marking_their_object_with_different_values_are_refused(trained_on, tmp_path) -> None:
    """Labels 0/1 in one case and 0/2 in another were scored as one structure without a word, where
    check-data, training and canet score ask whether they are classes of one label map."""
    import json

    import nibabel as nib
    import numpy as np

    from canet.errors import DataError

    _, ckpt = trained_on
    image = np.random.default_rng(0).normal(0, 1, (32, 32, 32)).astype(np.float32)
    entries = []
    for name, value in (("a", 1), ("b", 2), ("c", 255)):
        label = np.zeros((32, 32, 32), np.uint8)
        label[8:20, 8:20, 8:20] = value
        nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / f"{name}_seg.nii.gz")
        entries.append({"image": str(tmp_path / f"{name}.nii.gz"), "label": str(tmp_path / f"{name}_seg.nii.gz")})
    datalist = tmp_path / "dataset.json"
    datalist.write_text(json.dumps({"training": entries[:1], "test": entries}))
    with pytest.raises(DataError, match=rf"^{datalist}: the labels of split 'test' mark their object with different "
                                        r"values \(1 in case 'a', 2 in case 'b'\): one structure, or classes of one "
                                        r"label map\? state num_classes: 2 in the datalist"):
        evaluate(ckpt, datalist, out_dir=tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()  # refused before any prediction
    # 0/1 beside 0/255 is one convention or the other, not a question
    datalist.write_text(json.dumps({"training": entries[:1], "test": [entries[0], entries[2]]}))
    assert len(evaluate(ckpt, datalist, out_dir=tmp_path / "e1", progress=False)["rows"]) == 2
    datalist.write_text(json.dumps({"num_classes": 2, "training": entries[:1], "test": entries}))  # stated
    assert len(evaluate(ckpt, datalist, out_dir=tmp_path / "e2", progress=False)["rows"]) == 3
