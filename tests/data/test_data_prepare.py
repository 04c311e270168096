"""prepare_la / `canet prepare-la` on raw-style NRRD files made from real LA cases."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nrrd
import numpy as np
import pytest

from canet.cli.main import main
from canet.data import LA_CASES_DIR, LA_FILE_NAME, check_dataset, open_dataset, prepare_la
from canet.data.prepare import crop_case
from canet.errors import DataError

PAD = 30  # background added around the published crops in x and y, so margins fit


@pytest.fixture(scope="module")
def raw_dir(la_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real cases as the challenge ships them: lgemri.nrrd (uint8 intensities) + laendo.nrrd (0/255)."""
    raw = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    for case_id in (la_small / "train.list").read_text().split()[:2]:
        with h5py.File(la_small / LA_CASES_DIR / case_id / LA_FILE_NAME, "r") as fh:
            image, label = fh["image"][()], fh["label"][()]
        shape = (image.shape[0] + 2 * PAD, image.shape[1] + 2 * PAD, image.shape[2])
        intensities = np.clip(rng.normal(20, 5, shape), 0, 255)
        inner = (slice(PAD, PAD + image.shape[0]), slice(PAD, PAD + image.shape[1]), slice(None))
        intensities[inner] = np.clip(image * 25 + 40, 0, 255)
        mask = np.zeros(shape, np.uint8)
        mask[inner] = label * 255
        header = {"space": "left-posterior-superior", "space directions": np.diag([0.625, 0.625, 0.625]),
                  "space origin": np.array([-120.0, -100.0, 50.0])}
        (raw / case_id).mkdir()
        nrrd.write(str(raw / case_id / "lgemri.nrrd"), intensities.astype(np.uint8), header)
        nrrd.write(str(raw / case_id / "laendo.nrrd"), mask, header)
    return raw


def _zscore64(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return (a - a.mean()) / a.std()


def test_prepare_la_crops_around_the_atrium(raw_dir: Path, tmp_path: Path) -> None:
    ids = sorted(p.name for p in raw_dir.iterdir())
    (tmp_path / "train.txt").write_text(ids[0] + "\n")
    (tmp_path / "test.txt").write_text(ids[1] + "\n")
    out = tmp_path / "LA"
    record = prepare_la(raw_dir, out, seed=5, train_list=tmp_path / "train.txt",
                        test_list=tmp_path / "test.txt", progress=False)
    assert (out / "train.list").read_text().split() == [ids[0]]
    assert (out / "test.list").read_text().split() == [ids[1]]
    assert json.loads((out / "prepare_la.json").read_text()) == record
    assert record["seed"] == 5 and record["margin"] == [10, 20] and record["patch_size"] == [112, 112, 80]
    for case_id in ids:
        rec = record["cases"][case_id]
        raw_image, _ = nrrd.read(str(raw_dir / case_id / "lgemri.nrrd"))
        raw_label, _ = nrrd.read(str(raw_dir / case_id / "laendo.nrrd"))
        with h5py.File(out / LA_CASES_DIR / case_id / LA_FILE_NAME, "r") as fh:
            image, label = fh["image"][()], fh["label"][()]
            assert fh["image"].compression == "gzip"
        assert image.dtype == np.float32 and label.dtype == np.uint8
        assert rec["spacing"] == [0.625, 0.625, 0.625] and rec["source_shape"] == list(raw_image.shape)
        # the atrium box widened by the recorded margins, each in 10..20; z whole, no padding
        (x0, x1), (y0, y1), (z0, z1) = rec["crop"]
        (bx0, bx1), (by0, by1), _ = rec["bbox"]
        (mx0, mx1), (my0, my1) = rec["margins"]
        assert all(10 <= m <= 20 for m in (mx0, mx1, my0, my1))
        for (lo, hi), (want_lo, want_hi) in zip(((x0, x1), (y0, y1)), ((bx0 - mx0, bx1 + mx1), (by0 - my0, by1 + my1))):
            if want_hi - want_lo >= 112:
                assert (lo, hi) == (want_lo, want_hi)
            else:  # widened evenly to the patch
                need = 112 - (want_hi - want_lo)
                assert (lo, hi) == (want_lo - need // 2, want_hi + need - need // 2)
        assert (z0, z1) == (0, raw_image.shape[2]) and rec["pad"] == [[0, 0], [0, 0], [0, 0]]
        nz = np.nonzero(raw_label)
        assert [[int(v.min()), int(v.max()) + 1] for v in nz] == rec["bbox"]
        # content: the z-score over the whole scan, cropped; the mask (255 -> 1), cropped
        box = (slice(x0, x1), slice(y0, y1), slice(z0, z1))
        np.testing.assert_array_equal(label, (raw_label[box] == 255).astype(np.uint8))
        np.testing.assert_allclose(image, _zscore64(raw_image)[box], atol=1e-5)
        assert rec["shape"] == list(image.shape) and all(s >= p for s, p in zip(image.shape, (112, 112, 80)))
    # same seed -> same files; another seed -> other margins
    again = prepare_la(raw_dir, tmp_path / "again", seed=5, progress=False)
    assert again["cases"] == record["cases"]
    other = prepare_la(raw_dir, tmp_path / "other", seed=6, progress=False)
    assert [other["cases"][i]["margins"] for i in ids] != [record["cases"][i]["margins"] for i in ids]
    assert not (tmp_path / "again" / "train.list").exists()  # no lists given, none written
    spec = open_dataset(out)
    assert [c.case_id for c in spec.labeled] == [ids[0]] and [c.case_id for c in spec.test] == [ids[1]]


def test_crop_never_smaller_than_the_patch(raw_dir: Path, tmp_path: Path) -> None:
    patch = (200, 190, 96)  # wider than the atrium box + margins in x/y; deeper than the 88 slices
    record = prepare_la(raw_dir, tmp_path / "LA", seed=1, patch_size=patch, progress=False)
    for case_id, rec in record["cases"].items():
        with h5py.File(tmp_path / "LA" / LA_CASES_DIR / case_id / LA_FILE_NAME, "r") as fh:
            image, label = fh["image"][()], fh["label"][()]
        assert image.shape == label.shape and all(s >= p for s, p in zip(image.shape, patch))
        (x0, x1), (y0, y1), _ = rec["crop"]
        assert x1 - x0 >= 200 and y1 - y0 >= 190
        assert 0 <= x0 and x1 <= rec["source_shape"][0]
        assert rec["pad"][2] == [4, 4] and rec["pad"][:2] == [[0, 0], [0, 0]]
        assert np.all(image[:, :, :4] == 0) and np.all(image[:, :, -4:] == 0)
        bx, by, _ = rec["bbox"]
        assert x0 <= bx[0] and bx[1] <= x1 and y0 <= by[0] and by[1] <= y1  # the atrium is inside
        assert int(label.sum()) == int(np.count_nonzero(nrrd.read(str(raw_dir / case_id / "laendo.nrrd"))[0]))


def test_crop_case_clips_then_extends_inside_the_scan() -> None:
    label = np.zeros((60, 50, 10), np.uint8)
    label[2:8, 40:48, 3:6] = 1  # near the x=0 and y=end borders
    image = np.ones(label.shape, np.float32)
    img, lab, rec = crop_case(image, label, np.random.default_rng(0), patch_size=(30, 30, 12))
    assert rec["crop"][0][0] == 0 and rec["crop"][1][1] == 50  # clipped at the scan's edges
    assert rec["crop"][0][1] - rec["crop"][0][0] >= 30 and rec["crop"][1][1] - rec["crop"][1][0] >= 30
    assert rec["pad"] == [[0, 0], [0, 0], [1, 1]] and img.shape[2] == 12 and lab.sum() == label.sum()
    with pytest.raises(DataError, match="the atrium mask is empty"):
        crop_case(image, np.zeros_like(label), np.random.default_rng(0))


def test_prepare_la_command_and_errors(raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = sorted(p.name for p in raw_dir.iterdir())
    (tmp_path / "train.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "LA"
    assert main(["prepare-la", str(raw_dir), str(out), "--seed", "3", "--train-list",
                 str(tmp_path / "train.txt"), "--no-progress"]) == 0
    assert "wrote 2 case(s)" in capsys.readouterr().out
    assert check_dataset(out).ok

    assert main(["prepare-la", str(tmp_path / "nope"), str(out)]) == 2
    assert f"error: raw folder not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text("not_a_case\n")
    with pytest.raises(DataError, match="not_a_case/lgemri.nrrd: file not found"):
        prepare_la(raw_dir, out, train_list=tmp_path / "bad.txt", progress=False)
    with pytest.raises(DataError, match=r"margin must be two whole numbers 0 <= low <= high, got \[20, 10\]"):
        prepare_la(raw_dir, out, margin=(20, 10), progress=False)
    # a case in both lists (here the same file given twice), or twice in one list: refused before any work
    fresh = tmp_path / "LA2"
    with pytest.raises(DataError, match=rf"case '{ids[0]}' is in both .*train.txt and .*train.txt \(2 shared case"):
        prepare_la(raw_dir, fresh, train_list=tmp_path / "train.txt", test_list=tmp_path / "train.txt", progress=False)
    (tmp_path / "twice.txt").write_text(f"{ids[0]}\n{ids[1]}\n{ids[0]}\n")
    with pytest.raises(DataError, match=rf"twice.txt: case '{ids[0]}' is listed twice$"):
        prepare_la(raw_dir, fresh, train_list=tmp_path / "twice.txt", progress=False)
    assert not fresh.exists()
    empty = tmp_path / "raw_empty_mask" / "case"
    empty.mkdir(parents=True)
    nrrd.write(str(empty / "lgemri.nrrd"), np.ones((8, 8, 8), np.uint8))
    nrrd.write(str(empty / "laendo.nrrd"), np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(DataError, match="laendo.nrrd: the atrium mask is empty"):
        prepare_la(empty.parent, tmp_path / "o", progress=False)


def _fake_raw(root: Path, cases: dict[str, dict]) -> Path:
    """Small raw cases: a bright 8x8x6 atrium in a 40x40x20 scan; ``flip_label`` stores the mask mirrored in x
    with a header that says so; ``nan`` puts NaN voxels in the scan; ``empty`` writes an empty mask."""
    raw = root / "raw"
    step = 0.625
    for case_id, how in cases.items():
        mask = np.zeros((40, 40, 20), np.uint8)
        mask[2:10, 20:28, 7:13] = 255  # near x = 0: a mirrored reading would put it near x = 39
        scan = np.where(mask > 0, 200.0, 50.0).astype(np.float32)
        if how.get("nan"):
            scan[39, 39, :5] = np.nan
        if how.get("empty"):
            mask[:] = 0
        header = {"space": "left-posterior-superior", "space directions": np.diag([step] * 3),
                  "space origin": np.zeros(3)}
        (raw / case_id).mkdir(parents=True)
        nrrd.write(str(raw / case_id / "lgemri.nrrd"), scan, header)
        if how.get("flip_label"):
            flipped = {**header, "space directions": np.diag([-step, step, step]),
                       "space origin": np.array([39 * step, 0.0, 0.0])}
            nrrd.write(str(raw / case_id / "laendo.nrrd"), mask[::-1].copy(), flipped)
        else:
            nrrd.write(str(raw / case_id / "laendo.nrrd"), mask, header)
    return raw


def test_prepare_la_reads_the_mask_by_its_header_and_fills_nan(tmp_path: Path) -> None:
    """A mask stored mirrored (header says so) lands on the atrium; NaN scan voxels are filled, with a warning."""
    raw = _fake_raw(tmp_path, {"a": {"flip_label": True, "nan": True}})
    warnings: list[str] = []
    record = prepare_la(raw, tmp_path / "LA", patch_size=(16, 16, 16), progress=False, warn=warnings.append)
    with h5py.File(tmp_path / "LA" / LA_CASES_DIR / "a" / LA_FILE_NAME, "r") as fh:
        image, label = fh["image"][()], fh["label"][()]
    assert record["cases"]["a"]["bbox"] == [[2, 10], [20, 28], [7, 13]]  # the scan's own atrium box
    assert np.isfinite(image).all() and label.sum() == 8 * 8 * 6
    assert image[label == 1].min() > image[label == 0].max()  # every atrium voxel is a bright one
    assert warnings == [f"{raw / 'a' / 'lgemri.nrrd'}: 5 NaN or infinite voxel(s) set to the scan's smallest "
                        "finite value before the z-score"]
    assert record["cases"]["a"]["nonfinite_voxels"] == 5
    json.loads((tmp_path / "LA" / "prepare_la.json").read_text(), parse_constant=pytest.fail)  # strict JSON


@pytest.mark.parametrize(("value", "why"), [(np.nan, "the mask holds NaN or infinite values"),
                                            (0.5, r"mask values must be integers \(any nonzero one is atrium\), got 0.5")])
def test_prepare_la_refuses_a_mask_with_nan_or_fractional_values(tmp_path: Path, value: float, why: str) -> None:
    # NaN != 0 is True: one NaN voxel in a corner was atrium, and it grew the crop to reach it
    raw = _fake_raw(tmp_path, {"a": {}})
    mask, header = nrrd.read(str(raw / "a" / "laendo.nrrd"))
    mask = mask.astype(np.float32)
    mask[39, 0, 0] = value
    nrrd.write(str(raw / "a" / "laendo.nrrd"), mask, header)
    with pytest.raises(DataError, match=f"laendo.nrrd: {why}"):
        prepare_la(raw, tmp_path / "LA", patch_size=(16, 16, 16), progress=False)
    assert list((tmp_path / "LA").iterdir()) == []  # nothing written


def test_prepare_la_refuses_a_label_map_and_masks_with_different_atrium_values(tmp_path: Path) -> None:
    """A 0/1/2 mask became one atrium, and 0/1 beside 0/2 one class, without a word (check-data, train and
    score refuse both); 0/1 beside 0/255 stays fine."""
    raw = _fake_raw(tmp_path, {"a": {}, "b": {}})
    mask, header = nrrd.read(str(raw / "a" / "laendo.nrrd"))
    two = np.where(mask > 0, 2, 0).astype(np.uint8)
    three = two.copy()
    three[2:5, 20:28, 7:13] = 1
    nrrd.write(str(raw / "a" / "laendo.nrrd"), three, header)
    with pytest.raises(DataError, match=r"a/laendo.nrrd: the mask holds values \{1, 2\}, not one atrium value; "
                                        r"prepare-la makes the binary atrium set"):
        prepare_la(raw, tmp_path / "LA", patch_size=(16, 16, 16), progress=False)
    nrrd.write(str(raw / "a" / "laendo.nrrd"), two, header)  # 0/2 beside b's 0/255
    with pytest.raises(DataError, match=r"^the masks mark the atrium with different values \(2 in case 'a', 255 in "
                                        r"case 'b'\): one structure, or classes of one label map\?"):
        prepare_la(raw, tmp_path / "LA2", patch_size=(16, 16, 16), progress=False)
    assert not (tmp_path / "LA2").exists() or list((tmp_path / "LA2").iterdir()) == []
    nrrd.write(str(raw / "a" / "laendo.nrrd"), np.where(mask > 0, 1, 0).astype(np.uint8), header)  # 0/1 and 0/255
    record = prepare_la(raw, tmp_path / "LA3", patch_size=(16, 16, 16), progress=False)
    assert sorted(record["cases"]) == ["a", "b"]
    for case in ("a", "b"):
        with h5py.File(tmp_path / "LA3" / LA_CASES_DIR / case / LA_FILE_NAME, "r") as fh:
            assert fh["label"][()].sum() == 8 * 8 * 6


def test_prepare_la_writes_all_or_nothing_into_a_new_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _fake_raw(tmp_path, {"a": {}, "b": {"empty": True}})
    out = tmp_path / "LA"
    with pytest.raises(DataError, match="b/laendo.nrrd: the atrium mask is empty"):
        prepare_la(raw, out, patch_size=(16, 16, 16), progress=False)
    assert list(out.iterdir()) == []  # case a was converted, but nothing half-made is left
    (raw / "b" / "lgemri.nrrd").unlink()  # a mask without its scan: named, not skipped
    with pytest.raises(DataError, match=r"b/lgemri.nrrd: file not found \(the case has a laendo.nrrd\)"):
        prepare_la(raw, out, patch_size=(16, 16, 16), progress=False)
    (raw / "b" / "laendo.nrrd").unlink()
    (raw / "b").rmdir()
    (out / ".prepare-la.partial" / "junk").mkdir(parents=True)  # left by a killed conversion: removed
    assert main(["prepare-la", str(raw), str(out), "--patch-size", "16", "16", "16", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 case(s)" in printed and "no train.list written" in printed
    assert sorted(p.name for p in out.iterdir()) == [LA_CASES_DIR, "prepare_la.json"]
    # Not empty any more: refused in one line, nothing touched.
    assert main(["prepare-la", str(raw), str(out), "--patch-size", "16", "16", "16", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out} is not empty (it holds {LA_CASES_DIR} and 1 more); give a new or empty folder\n"
