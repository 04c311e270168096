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
