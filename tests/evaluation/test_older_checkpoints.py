"""Checkpoints without a preprocessing record, on a file an older canet really wrote (see data/README.md).

Such a checkpoint is not silently z-scored and given LCC: the preprocessing is read
from the training data its config names when it is still there, and one warning
line says what is used either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from canet.checkpoint import load_checkpoint, save_checkpoint
from canet.data import zscore
from canet.evaluation import checkpoint_settings, evaluate, predict_files
from canet.inferers import largest_connected_component, predict_volume
from canet.models import build_generator, create_model

OLD = Path(__file__).parent / "data" / "vnet_1474f7d_no_record.pt"
OLD_ROOT = "/tmp/oldrun/data/dataset.json"  # the training datalist the older run named
AFFINE = np.diag([0.8, 0.8, 1.5, 1.0])
START = "has no record of its training data's preprocessing (an older canet or an imported file)"


@pytest.fixture()
def old_payload() -> dict:
    if Path(OLD_ROOT).exists():
        pytest.skip(f"{OLD_ROOT} exists on this machine: the older run's training data would be read")
    return load_checkpoint(OLD)


def _raw_scan() -> tuple[np.ndarray, np.ndarray]:
    """A 32^3 raw-intensity scan like the older run's training images, and its box label."""
    rng = np.random.default_rng(1)
    label = np.zeros((32, 32, 32), np.uint8)
    label[8:22, 9:24, 10:20] = 1
    image = (300.0 + 200.0 * label + rng.normal(0, 20, label.shape)).astype(np.float32)
    return image, label


def _save(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))


def test_the_fixture_is_an_older_checkpoint(old_payload: dict) -> None:
    assert "preprocessing" not in old_payload
    assert old_payload["created_by"] == "canet.training.Trainer" and old_payload["iteration"] == 2
    assert old_payload["config"]["data"]["root"] == OLD_ROOT
    assert old_payload["model"] == {
        "name": "vnet", "kwargs": {"in_channels": 1, "num_classes": 2, "n_filters": 1, "dropout": 0.5},
    }
    assert checkpoint_settings(old_payload) == {
        "patch_size": (32, 32, 32), "num_classes": 2, "normalize": None, "orientation": None, "spacing": None,
        "lcc": None, "recorded": False, "source": "none", "training_data": OLD_ROOT,
    }


def test_without_its_training_data_the_assumption_is_said_in_one_line(tmp_path: Path, old_payload: dict) -> None:
    image, _ = _raw_scan()
    _save(tmp_path / "scan.nii.gz", image)
    said: list[str] = []
    predict_files(OLD, [tmp_path / "scan.nii.gz"], tmp_path / "out", progress=False, warn=said.append)
    assert said == [
        f"{OLD} {START} and its training data {OLD_ROOT} cannot be read: assuming z-scored images in stored "
        "voxel order, LCC on, no voxel-size check"
    ]
    model = build_generator(old_payload).eval()
    mask, _ = predict_volume(model, zscore(image), (32, 32, 32), lcc=False)
    got = np.asarray(nib.load(str(tmp_path / "out" / "scan_pred.nii.gz")).dataobj)
    np.testing.assert_array_equal(got, largest_connected_component(mask))


def test_the_training_datalist_gives_the_normalisation_orientation_and_lcc(tmp_path: Path, old_payload: dict) -> None:
    """Where the older run's datalist is (here: moved to tmp_path), its normalize: false is used: raw intensities."""
    image, label = _raw_scan()
    for name in ("img0", "img1"):
        _save(tmp_path / f"{name}.nii.gz", image)
    _save(tmp_path / "lab0.nii.gz", label)
    _save(tmp_path / "lab1.nii.gz", label)
    datalist = tmp_path / "dataset.json"
    entries = [{"image": "img0.nii.gz", "label": "lab0.nii.gz"}, {"image": "img1.nii.gz", "label": "lab1.nii.gz"}]
    datalist.write_text(json.dumps({"normalize": False, "training": entries, "test": entries[:1]}))
    moved = dict(old_payload)
    moved["config"] = {**old_payload["config"], "data": {**old_payload["config"]["data"], "root": str(datalist)}}
    ckpt = tmp_path / "old_moved.pt"
    save_checkpoint(moved, ckpt)  # the older payload, only the datalist's place changed
    settings = checkpoint_settings(load_checkpoint(ckpt))
    assert settings["source"] == "training data" and settings["recorded"] is False
    assert settings["normalize"] is False and settings["orientation"] == "RAS" and settings["lcc"] is False
    assert settings["spacing"] == pytest.approx((0.8, 0.8, 1.5))

    said: list[str] = []
    predict_files(ckpt, [tmp_path / "img0.nii.gz"], tmp_path / "out", probabilities=True, progress=False,
                  warn=said.append)
    assert said == [f"{ckpt} {START}; read from its training data {datalist}: raw images in RAS orientation, LCC off"]
    model = build_generator(old_payload).eval()
    _, raw_prob = predict_volume(model, image, (32, 32, 32), lcc=False)
    _, z_prob = predict_volume(model, zscore(image), (32, 32, 32), lcc=False)
    got = np.asarray(nib.load(str(tmp_path / "out" / "img0_prob.nii.gz")).dataobj)
    np.testing.assert_allclose(got, raw_prob, atol=1e-6)
    assert np.abs(z_prob - raw_prob).max() > 1e-3  # the two inputs are told apart

    # evaluate says the same and records where the preprocessing came from
    said.clear()
    summary = evaluate(ckpt, datalist, out_dir=tmp_path / "ev", progress=False, warn=said.append)
    assert said == [f"{ckpt} {START}; read from its training data {datalist}: raw images in RAS orientation, LCC off"]
    assert summary["preprocessing_from"] == "training data" and summary["normalize"] == "none"
    assert summary["preprocessing_note"] == said[0]
    summary = evaluate(OLD, datalist, out_dir=tmp_path / "ev_old", progress=False, warn=said.append)
    assert summary["preprocessing_from"] == "none" and summary["normalize"] == "none"  # the evaluated datalist's
    assert said[-1] == (
        f"{OLD} {START} and its training data {OLD_ROOT} cannot be read: assuming raw images in stored voxel "
        "order, LCC off, no voxel-size check"
    )


def test_weights_that_do_not_fit_their_recorded_model_or_diverged_are_one_line(tmp_path, run_cli, checkpoint) -> None:
    nib.save(nib.Nifti1Image(np.zeros((20, 24, 16), np.float32), np.eye(4)), str(tmp_path / "s.nii.gz"))
    payload = load_checkpoint(checkpoint)
    wider = {**payload, "model": {**payload["model"], "kwargs": {**payload["model"]["kwargs"], "n_filters": 4}}}
    save_checkpoint(wider, tmp_path / "wider.pt")  # recorded as 4 filters, weights of 2: a traceback before
    code, _, err = run_cli("predict", tmp_path / "wider.pt", tmp_path / "s.nii.gz", "-o", tmp_path / "o", "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert f"error: {tmp_path / 'wider.pt'}: weights do not fit model 'vnet' with its recorded arguments (" in err
    # a canet checkpoint recorded as a V-Net: keys of another architecture, the file and a key named
    canet = create_model("canet", n_filters=2, patch_size=(32, 32, 16))
    other = {**payload, "generator": canet.state_dict()}
    save_checkpoint(other, tmp_path / "other.pt")
    code, _, err = run_cli("predict", tmp_path / "other.pt", tmp_path / "s.nii.gz", "-o", tmp_path / "o", "--quiet")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {tmp_path / 'other.pt'}: weights do not fit model 'vnet' with its recorded "
                          "arguments (0 missing keys, ") and "unexpected keys; unexpected 'transformer." in err, err
    # NaN weights gave an empty mask, exit 0 and no word
    key = next(k for k, v in payload["generator"].items() if v.is_floating_point() and v.numel() > 1)
    nan = {**payload, "generator": {**payload["generator"], key: payload["generator"][key] * float("nan")}}
    save_checkpoint(nan, tmp_path / "nan.pt")
    code, _, err = run_cli("predict", tmp_path / "nan.pt", tmp_path / "s.nii.gz", "-o", tmp_path / "o", "--quiet")
    assert code == 2 and err == (f"error: {tmp_path / 'nan.pt'}: 1 weight tensor(s) hold NaN or infinite values "
                                 f"(first {key!r}); the training that wrote it diverged, so it would segment nothing\n")
    assert not (tmp_path / "o" / "s_pred.nii.gz").exists()
