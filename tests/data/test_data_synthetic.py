"""The synthetic set: deterministic, LA layout, MR-like and learnable, fast to write."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage

from canet.cli.main import main
from canet.data import (
    LA_CASES_DIR,
    LA_FILE_NAME,
    check_dataset,
    make_synthetic_case,
    open_dataset,
    write_synthetic_dataset,
)
from canet.errors import DataError


def _read(root: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(root / LA_CASES_DIR / case_id / LA_FILE_NAME, "r") as fh:
        assert fh["image"].compression == "gzip" and fh["label"].compression == "gzip"
        return fh["image"][()], fh["label"][()]


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = write_synthetic_dataset(tmp_path / "a", n_train=3, n_test=1, seed=7, shape=(32, 32, 20))
    b = write_synthetic_dataset(tmp_path / "b", n_train=3, n_test=1, seed=7, shape=(32, 32, 20))
    c = write_synthetic_dataset(tmp_path / "c", n_train=3, n_test=1, seed=8, shape=(32, 32, 20))
    assert (a / "train.list").read_text() == "synth_000\nsynth_001\nsynth_002\n"
    assert (a / "test.list").read_text() == "synth_003\n"
    for i in range(4):
        ia, la = _read(a, f"synth_{i:03d}")
        ib, lb = _read(b, f"synth_{i:03d}")
        ic, lc = _read(c, f"synth_{i:03d}")
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(ia, ic) and not np.array_equal(la, lc)
    assert json.loads((a / "synthetic.json").read_text())["seed"] == 7


def test_cases_look_like_an_atrium_in_lge_mr() -> None:
    for i in range(6):
        image, label = make_synthetic_case((96, 96, 64), np.random.default_rng([0, i]))
        assert image.shape == label.shape == (96, 96, 64)
        assert image.dtype == np.float32 and label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        assert abs(float(image.mean())) < 1e-4 and abs(float(image.std()) - 1) < 1e-4  # z-scored
        fraction = float(label.mean())
        assert 0.02 < fraction < 0.12  # LA labels cover about 5-18 % of the published crops
        _, n = ndimage.label(label)
        assert n == 1  # the veins leave the body: one connected structure
        inside, outside = image[label == 1], image[label == 0]
        assert inside.mean() - outside.mean() > 2.0  # blood pool visibly brighter
        assert inside.std() < 1.0  # but not uniform: bias field and noise
        # veins: the label reaches further from the body's centre than an ellipsoid would in some direction
        body = ndimage.binary_opening(label, iterations=4)
        assert (label & ~body).sum() > 0.05 * label.sum()
        # the bias field: mean intensity of the background differs across the volume
        assert abs(float(image[:20][label[:20] == 0].mean() - image[-20:][label[-20:] == 0].mean())) > 0.01
        # the structure fits in the volume (no heavy clipping at the x/y borders)
        assert label[0].sum() + label[-1].sum() + label[:, 0].sum() + label[:, -1].sum() < 0.01 * label.sum()


def test_simple_threshold_already_finds_most_of_it() -> None:
    """Learnable: one intensity threshold gives Dice > 0.8, so a network can get there quickly."""
    image, label = make_synthetic_case((64, 64, 40), np.random.default_rng([1, 0]))
    pred = image > 1.5
    dice = 2 * np.logical_and(pred, label).sum() / (pred.sum() + label.sum())
    assert dice > 0.8


def test_default_size_set_is_quick_to_write(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    out = write_synthetic_dataset(tmp_path / "synth", n_train=20, n_test=4, seed=0)
    elapsed = time.perf_counter() - t0
    # about 1-2 s on a free core; the bound leaves room for a loaded shared test machine
    assert elapsed < 20, f"writing 24 synthetic cases took {elapsed:.1f} s"
    spec = open_dataset(out, labeled=4)
    assert len(spec.labeled) == 4 and len(spec.unlabeled) == 16 and len(spec.test) == 4


def test_make_synthetic_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo data"
    assert main(["make-synthetic", str(out), "--cases", "3", "--test", "1", "--seed", "4",
                 "--shape", "32", "32", "24"]) == 0
    assert "wrote 3 training + 1 test synthetic cases" in capsys.readouterr().out
    report = check_dataset(out)
    assert report.ok and report.summary["shape_max"] == [32, 32, 24]
    direct = make_synthetic_case((32, 32, 24), np.random.default_rng([4, 3]))
    image, label = _read(out, "synth_003")
    np.testing.assert_array_equal(image, direct[0])
    np.testing.assert_array_equal(label, direct[1])
    with pytest.raises(SystemExit):  # named by its option, not as n_train
        main(["make-synthetic", str(tmp_path / "x"), "--cases", "0"])
    assert "argument --cases: expected a positive integer, got '0'" in capsys.readouterr().err
    # a folder that holds a dataset (here the one just written): refused, its lists are kept
    lists = (out / "train.list").read_text()
    assert main(["make-synthetic", str(out), "--cases", "5"]) == 2
    assert capsys.readouterr().err == f"error: {out} is not empty; make-synthetic writes a new dataset into a new or empty folder\n"
    assert (out / "train.list").read_text() == lists


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="every side >= 16 voxels"):
        make_synthetic_case((8, 32, 32))
    with pytest.raises(DataError, match="seed must be a whole number >= 0, got -1"):
        write_synthetic_dataset("/nonexistent/never-written", seed=-1)
