"""evaluate/predict: --device auto, --amp (recorded, refused where impossible), --sums-on-cpu; image files."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.data import read_volume, write_synthetic_dataset
from canet.data.dataset import IMAGE_SUFFIXES
from canet.errors import DataError
from canet.evaluation import evaluate, find_image_files
from canet.inferers import InferenceSettings
from canet.models import create_model

CUDA = torch.cuda.is_available()
BF16 = CUDA and torch.cuda.is_bf16_supported()
AUTO = "cuda" if CUDA else "cpu"


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=2), "tests", config={"patch_size": [32, 32, 16]}), path)
    return path


@pytest.fixture()
def data(tmp_path):
    return write_synthetic_dataset(tmp_path / "synth", n_train=2, n_test=1, shape=(40, 36, 20))


def test_evaluate_defaults_to_auto_fp32_and_records_them(tmp_path, run_cli, checkpoint, data) -> None:
    code, _, err = run_cli("evaluate", checkpoint, "--data", data, "--out", tmp_path / "a", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert (summary["device"], summary["amp"], summary["sw_batch_size"], summary["mode"]) == (AUTO, "none", 4, "fast")
    # --sums-on-cpu changes where the sums live, not the result
    code, _, err = run_cli("evaluate", checkpoint, "--data", data, "--out", tmp_path / "b", "--quiet",
                           "--sums-on-cpu", "--device", "cpu")
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert again["device"] == "cpu"
    if not CUDA:  # the same device: the same numbers
        assert again["dice"] == summary["dice"]


@pytest.mark.skipif(BF16, reason="this machine runs bf16 (see the CUDA test)")
def test_bf16_is_refused_in_one_line_where_the_device_cannot_run_it(tmp_path, run_cli, checkpoint, data) -> None:
    code, _, err = run_cli("evaluate", checkpoint, "--data", data, "--out", tmp_path / "a", "--amp", "bf16")
    assert code == 2 and err == f"error: amp 'bf16' needs a CUDA device, got {AUTO}\n"
    assert not (tmp_path / "a").exists()  # refused before any work
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((36, 34, 18), np.float32), np.eye(4)), str(scan))
    code, _, err = run_cli("predict", checkpoint, scan, "-o", tmp_path / "p", "--amp", "bf16", "--device", "cpu")
    assert code == 2 and err == "error: amp 'bf16' needs a CUDA device, got cpu\n"


@pytest.mark.skipif(not BF16, reason="needs a GPU with bf16")
def test_cuda_bf16_evaluation_is_recorded_and_close_to_fp32(tmp_path, checkpoint, data) -> None:
    fp32 = evaluate(checkpoint, data, out_dir=tmp_path / "a", progress=False, lcc=False)
    bf16 = evaluate(checkpoint, data, settings=InferenceSettings(amp="bf16", lcc=False), out_dir=tmp_path / "b",
                    progress=False)
    assert (fp32["amp"], bf16["amp"], bf16["device"]) == ("none", "bf16", "cuda")
    assert abs(fp32["dice"]["mean"] - bf16["dice"]["mean"]) < 0.05


def test_settings_object_and_keywords_give_the_same_evaluation(tmp_path, checkpoint, data) -> None:
    settings = InferenceSettings(mode="reference", lcc=False, device="cpu")
    a = evaluate(checkpoint, data, settings=settings, out_dir=tmp_path / "a", progress=False)
    b = evaluate(checkpoint, data, out_dir=tmp_path / "b", progress=False, mode="reference", lcc=False, device="cpu")
    assert a["rows"][0]["dice"] == b["rows"][0]["dice"] and (a["mode"], a["lcc"], a["lcc_from"]) == ("reference", False, "option")


# --------------------------------------------------------------------------- image files


def _write(path, array: np.ndarray) -> None:
    name = path.name
    if name.endswith((".nii", ".nii.gz")):
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    elif name.endswith((".nrrd", ".nhdr")):
        nrrd.write(str(path), array, {"space": "right-anterior-superior", "space directions": np.eye(3)})
    else:
        with h5py.File(path, "w") as fh:
            fh["image"] = array
            fh["label"] = (array > 0).astype(np.uint8)


def test_every_image_suffix_is_read_found_and_predicted(tmp_path, run_cli, checkpoint) -> None:
    """The one IMAGE_SUFFIXES: every suffix it names is read by read_volume, found in a folder by
    predict, and predicted like the same volume in NIfTI; other files are refused in one line."""
    assert set(IMAGE_SUFFIXES) == {".nii.gz", ".nii", ".nrrd", ".nhdr", ".h5", ".hdf5"}
    image = np.random.default_rng(0).standard_normal((33, 32, 16)).astype(np.float32)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, suffix in enumerate(IMAGE_SUFFIXES):
        path = folder / f"v{i}{suffix}"
        _write(path, image)
        array, _ = read_volume(path, "image")
        np.testing.assert_array_equal(array, image)
    (folder / "notes.txt").write_text("not an image")
    found = find_image_files([folder])
    assert sorted(p.name for p in found) == sorted(f"v{i}{s}" for i, s in enumerate(IMAGE_SUFFIXES))
    code, out, err = run_cli("predict", checkpoint, folder, "-o", tmp_path / "out", "--quiet", "--device", "cpu",
                             "--probabilities")
    assert code == 0, err
    probs = [np.asarray(nib.load(str(tmp_path / "out" / f"v{i}_prob.nii.gz")).dataobj) for i in range(len(IMAGE_SUFFIXES))]
    assert probs[0].shape == image.shape and np.ptp(probs[0]) > 1e-3
    for prob in probs[1:]:
        np.testing.assert_array_equal(prob, probs[0])
    mha = tmp_path / "v.mha"
    mha.write_bytes(b"ObjectType = Image\n")
    with pytest.raises(DataError, match=r"not a NIfTI, NRRD or HDF5 file \(\.nii\.gz, \.nii, \.nrrd, \.nhdr, \.h5, \.hdf5\)"):
        find_image_files([mha])
    code, _, err = run_cli("predict", checkpoint, tmp_path / "missing.nii.gz", "-o", tmp_path / "o")
    assert code == 2 and "input not found" in err
