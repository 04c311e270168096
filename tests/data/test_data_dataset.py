"""open_dataset / load_case: the LA layout (real and synthetic) and datalists with NIfTI and NRRD."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pytest
import yaml

from canet.data import (
    LA_CASES_DIR,
    LA_FILE_NAME,
    Case,
    load_case,
    open_dataset,
    read_array,
    read_geometry,
    read_volume,
    save_nifti,
)
from canet.data.dataset import nrrd_affine
from canet.errors import DataError

# --------------------------------------------------------------------------- LA layout


def test_real_la_splits_follow_the_lists(la_root: Path) -> None:
    train = (la_root / "train.list").read_text().split()
    test = (la_root / "test.list").read_text().split()
    spec = open_dataset(la_root, labeled=8)
    assert spec.kind == "la" and spec.num_classes == 2 and spec.normalize is False and spec.lcc is True
    assert [c.case_id for c in spec.labeled] == train[:8]
    assert [c.case_id for c in spec.unlabeled] == train[8:]
    assert len(spec.labeled) == 8 and len(spec.unlabeled) == len(train) - 8 == 72
    assert [c.case_id for c in spec.test] == test and len(test) == 20
    assert spec.validation == []
    first = spec.labeled[0]
    assert first.image == la_root / LA_CASES_DIR / train[0] / LA_FILE_NAME
    assert " " in first.image.parent.parent.name and first.image.is_file()
    assert all(c.label == c.image for c in spec.train)  # labels stay reachable for evaluation
    everything = open_dataset(la_root)
    assert len(everything.labeled) == 80 and everything.unlabeled == []
    assert [c.case_id for c in open_dataset(la_root, labeled=16).labeled] == train[:16]


def test_real_la_case_is_read_as_stored(la_small: Path) -> None:
    spec = open_dataset(la_small)
    case = spec.labeled[0]
    vol = load_case(case)
    with h5py.File(case.image, "r") as fh:
        image, label = fh["image"][()], fh["label"][()]
    assert vol.case_id == case.case_id
    assert vol.image.dtype == np.float32 and vol.label is not None and vol.label.dtype == np.uint8
    np.testing.assert_array_equal(vol.image, image)  # LA files are already z-scored: no change
    np.testing.assert_array_equal(vol.label, label)
    assert vol.spacing == (1.0, 1.0, 1.0)  # voxels, as the literature reports LA metrics
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    no_label = load_case(case, with_label=False)
    assert no_label.label is None
    normalised = load_case(case, normalize=True)
    assert abs(float(normalised.image.mean())) < 1e-4 and abs(float(normalised.image.std()) - 1) < 1e-3


def test_la_val_list_and_errors(synth_copy: Path, tmp_path: Path) -> None:
    ids = (synth_copy / "train.list").read_text().split()
    (synth_copy / "val.list").write_text(f"# held out\n{ids[-1]}\n\n")
    spec = open_dataset(synth_copy, labeled=3)
    assert [c.case_id for c in spec.validation] == [ids[-1]]
    assert len(spec.labeled) == 3 and len(spec.unlabeled) == 5 and len(spec.test) == 2
    with pytest.raises(DataError, match="labeled must be at least 1, got 0"):
        open_dataset(synth_copy, labeled=0)
    with pytest.raises(DataError, match="labeled=9 exceeds the 8 training cases"):
        open_dataset(synth_copy, labeled=9)
    with pytest.raises(DataError, match="labeled must be a whole number of cases, got True"):
        open_dataset(synth_copy, labeled=True)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="dataset not found: .*nowhere"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train.list"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match="expected an LA folder or a datalist"):
        open_dataset(tmp_path / "x.txt")


# --------------------------------------------------------------------------- datalists

RAS_AFFINE = np.array(
    [[-0.8, 0.0, 0.05, 30.0], [0.0, -0.7, 0.0, 25.5], [0.0, 0.1, 1.25, -40.0], [0.0, 0.0, 0.0, 1.0]]
)


def _volume(rng: np.random.Generator, shape: tuple[int, int, int] = (20, 18, 12)) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros(shape, np.uint8)
    label[5:12, 4:10, 3:9] = 1
    image = (rng.normal(100.0, 15.0, shape) + 80.0 * label).astype(np.float32)
    return image, label


def _write_nrrd(path: Path, array: np.ndarray, ras_affine: np.ndarray) -> None:
    """NRRD in LPS, as ITK/Slicer write it, of a volume whose RAS affine is ``ras_affine``."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ ras_affine[:3]
    header = {"space": "left-posterior-superior", "space directions": lps[:, :3].T,
              "space origin": lps[:, 3], "kinds": ["domain"] * 3}
    nrrd.write(str(path), array, header)


@pytest.fixture()
def datalist_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    for d in ("imagesTr", "labelsTr", "imagesUn", "imagesTs"):
        (tmp_path / d).mkdir()
    a_img, a_lab = _volume(rng)
    nib.save(nib.Nifti1Image(a_img, RAS_AFFINE), str(tmp_path / "imagesTr" / "a.nii.gz"))
    nib.save(nib.Nifti1Image(a_lab, RAS_AFFINE), str(tmp_path / "labelsTr" / "a.nii.gz"))
    b_img, b_lab = _volume(rng)
    _write_nrrd(tmp_path / "imagesTr" / "b.nrrd", b_img, RAS_AFFINE)
    _write_nrrd(tmp_path / "labelsTr" / "b.nrrd", b_lab, RAS_AFFINE)
    c_img, _ = _volume(rng)  # unlabeled: no label file exists at all
    nib.save(nib.Nifti1Image(c_img, np.eye(4)), str(tmp_path / "imagesUn" / "c.nii"))
    d_img, _ = _volume(rng)
    nib.save(nib.Nifti1Image(d_img, RAS_AFFINE), str(tmp_path / "imagesTs" / "d.nii.gz"))
    # the same volume as b, as NIfTI, to compare geometries
    nib.save(nib.Nifti1Image(b_img, RAS_AFFINE), str(tmp_path / "b_as_nifti.nii.gz"))
    return tmp_path


def _datalist() -> dict:
    return {
        "name": "toy",
        "training": [
            {"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"},
            {"image": "./imagesTr/b.nrrd", "label": "labelsTr/b.nrrd"},
        ],
        "unlabeled": [{"image": "imagesUn/c.nii"}],
        "test": ["imagesTs/d.nii.gz"],
    }


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_datalist_with_nifti_nrrd_and_unlabeled_case(datalist_dir: Path, fmt: str) -> None:
    path = datalist_dir / f"dataset.{fmt}"
    text = json.dumps(_datalist()) if fmt == "json" else yaml.safe_dump(_datalist())
    path.write_text(text)
    spec = open_dataset(path)
    assert spec.kind == "datalist" and spec.datalist == path and spec.root == datalist_dir
    assert spec.num_classes == 2 and spec.normalize is True
    assert spec.lcc is False  # largest-component post-processing is off unless the datalist asks
    assert [c.case_id for c in spec.labeled] == ["a", "b"]
    assert [c.case_id for c in spec.unlabeled] == ["c"] and spec.unlabeled[0].label is None
    assert [c.case_id for c in spec.test] == ["d"] and spec.test[0].label is None

    a = load_case(spec.labeled[0])
    raw_a = np.asarray(nib.load(str(datalist_dir / "imagesTr" / "a.nii.gz")).dataobj)
    np.testing.assert_allclose(a.image, (raw_a - raw_a.mean()) / raw_a.std(), atol=1e-4)
    assert a.image.dtype == np.float32 and a.label is not None and a.label.dtype == np.uint8
    np.testing.assert_allclose(a.affine, RAS_AFFINE)
    np.testing.assert_allclose(a.spacing, np.linalg.norm(RAS_AFFINE[:3, :3], axis=0), rtol=1e-5)

    b = load_case(spec.labeled[1])
    as_nifti = nib.load(str(datalist_dir / "b_as_nifti.nii.gz"))
    np.testing.assert_allclose(b.affine, as_nifti.affine, atol=1e-6)  # NRRD (LPS) -> same RAS affine
    np.testing.assert_allclose(b.spacing, as_nifti.header.get_zooms()[:3], rtol=1e-5)
    assert int(b.label.sum()) == 7 * 6 * 6  # type: ignore[union-attr]

    c = load_case(spec.unlabeled[0])
    assert c.label is None and c.image.shape == (20, 18, 12)
    assert abs(float(c.image.mean())) < 1e-5

    raw = load_case(spec.labeled[0], normalize=False)
    np.testing.assert_array_equal(raw.image, raw_a)


def test_datalist_options_and_ids(datalist_dir: Path) -> None:
    data = _datalist()
    data.update(num_classes=3, normalize=False, postprocess={"lcc": True})
    data["validation"] = [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz", "id": "val_a"}]
    path = datalist_dir / "d.yml"
    path.write_text(yaml.safe_dump(data))
    spec = open_dataset(path, labeled=1)
    assert spec.num_classes == 3 and spec.normalize is False and spec.lcc is True
    assert [c.case_id for c in spec.labeled] == ["a"]
    assert [c.case_id for c in spec.unlabeled] == ["b", "c"]  # the rest of training, then unlabeled
    assert spec.validation[0].case_id == "val_a"
    vol = load_case(spec.labeled[0])
    raw_a = np.asarray(nib.load(str(datalist_dir / "imagesTr" / "a.nii.gz")).dataobj)
    np.testing.assert_array_equal(vol.image, raw_a)  # normalize: false


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["training"][0].pop("label"), r"training\[0\] has no 'label' path"),
        (lambda d: d["training"][1].pop("image"), r"training\[1\] has no 'image' path"),
        (lambda d: d.pop("training"), "no 'training' list"),
        (lambda d: d.update(num_classes=1), "num_classes must be an integer >= 2, got 1"),
        (lambda d: d.update(num_classes=400), r"num_classes must be at most 256 \(labels are read as values 0..255\), got 400"),
        (lambda d: d.update(normalize="yes"), "normalize must be true or false, got 'yes'"),
        (lambda d: d.update(unlabeled={"image": "x"}), "'unlabeled' must be a list"),
        (lambda d: d.update(postprocess={"lcc": "yes"}), "postprocess.lcc must be true or false, got 'yes'"),
        (lambda d: d.update(postprocess={"fill_holes": True}), "unknown postprocess key 'fill_holes'"),
        (lambda d: d.update(postprocess=True), "postprocess must be a mapping"),
        # A misspelt top-level key would silently drop its cases (or its setting): refused, with the guess.
        (lambda d: d.update(unlabelled=d.pop("unlabeled")),
         r"unknown datalist key 'unlabelled' \(did you mean 'unlabeled'\? known: training, unlabeled, "),
        (lambda d: d.update(tests=d.pop("test")), r"unknown datalist key 'tests' \(did you mean 'test'\?"),
        (lambda d: d.update(tets=d.pop("test")), r"unknown datalist key 'tets' \(known: "),
        (lambda d: d.update(num_clases=3), r"unknown datalist key 'num_clases' \(did you mean 'num_classes'\?"),
        (lambda d: d.update(extra_cases=[]), r"unknown datalist key 'extra_cases' \(known: training, "),
        (lambda d: d.update(traning=d.pop("training")), r"unknown datalist key 'traning' \(did you mean 'training'"),
        (lambda d: d["training"][0].update(labl="x"), r"training\[0\] has a key 'labl': did you mean 'label'\?"),
        (lambda d: d["unlabeled"][0].update(Image="x"), r"unlabeled\[0\] has a key 'Image': did you mean 'image'\?"),
    ],
)
def test_datalist_errors(datalist_dir: Path, mutate, message: str) -> None:
    data = _datalist()
    mutate(data)
    path = datalist_dir / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        open_dataset(path)


def test_datalist_reads_past_descriptive_keys(datalist_dir: Path) -> None:
    """The Decathlon's and nnU-Net's descriptive keys, and an entry's own metadata, are not errors."""
    data = _datalist()
    data.update(description="toy", labels={"0": "background", "1": "atrium"}, modality={"0": "MRI"},
                numTraining=2, tensorImageSize="3D", channel_names={"0": "MRI"}, file_ending=".nii.gz")
    data["training"][0]["age"] = 61
    path = datalist_dir / "described.json"
    path.write_text(json.dumps(data))
    spec = open_dataset(path)
    assert [c.case_id for c in spec.labeled] == ["a", "b"] and [c.case_id for c in spec.unlabeled] == ["c"]


def test_a_split_written_twice_is_refused(datalist_dir: Path) -> None:
    """JSON and YAML keep the last of two keys: a second 'training' list used to drop the first one's cases."""
    data = _datalist()
    first, second = json.dumps(data["training"][:1]), json.dumps(data["training"][1:])
    text = json.dumps(data).replace('"training": ', f'"training": {first}, "training": ', 1)
    path = datalist_dir / "twice.json"
    path.write_text(text)
    assert len(json.loads(text)["training"]) == 2  # what json.loads alone would keep, silently
    with pytest.raises(DataError, match=r"twice.json: key 'training' appears twice in one object; keep one$"):
        open_dataset(path)
    lines = [f"training: {first}", f"unlabeled: {json.dumps(data['unlabeled'])}", f"training: {second}"]
    path = datalist_dir / "twice.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"twice.yaml: key 'training' appears twice \(lines 1 and 3\); keep one$"):
        open_dataset(path)


def test_a_yaml_datalist_keeps_ids_that_look_like_numbers(datalist_dir: Path) -> None:
    """Case ids are read as written: 12e45 is no float 1.2e+46 (configs read 1e-3 as a float, datalists do not)."""
    data = _datalist()
    lines = ["training:"]
    for entry, case_id in zip(data["training"], ("12e45", "0e12")):
        lines += [f"- image: {entry['image']}", f"  label: {entry['label']}", f"  id: {case_id}"]
    path = datalist_dir / "ids.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert [c.case_id for c in open_dataset(path).labeled] == ["12e45", "0e12"]


@pytest.mark.parametrize(
    ("written", "case_id"),
    [("010", "010"), ("0x1A", "0x1A"), ("1:10", "1:10"), ("1.10", "1.10"), ("1_000", "1_000"),
     ("yes", "yes"), ("+12", "+12"), ("7", "7"), ("'007'", "007")],
)
def test_a_yaml_datalist_keeps_ids_as_written(datalist_dir: Path, written: str, case_id: str) -> None:
    """YAML 1.1 reads 010 as 8, 0x1A as 26, 1:10 as 70, 1.10 as 1.1, yes as True: ids are kept as text.

    Read as numbers, 010 became the case '8' (which another case may be called) and the
    masks were saved as 26_pred.nii.gz, with exit 0.
    """
    entry = _datalist()["training"][0]
    lines = ["training:", f"- image: {entry['image']}", f"  label: {entry['label']}", f"  id: {written}",
             "- image: imagesTr/b.nrrd", "  label: labelsTr/b.nrrd", "  case_id: b", "  age: 010"]
    path = datalist_dir / "ids.yaml"
    path.write_text("\n".join(lines) + "\n")
    if written not in ("7", "'007'"):  # what a plain YAML reader makes of it
        assert str(yaml.safe_load(path.read_text())["training"][0]["id"]) != case_id
    assert [c.case_id for c in open_dataset(path).labeled] == [case_id, "b"]


@pytest.mark.parametrize("written", ["1.10", "true", "[1, 2]", "{\"a\": 1}"])
def test_a_json_id_that_is_not_text_is_refused(datalist_dir: Path, written: str) -> None:
    """JSON has no way to keep 1.10 as written; an id that is not a string or integer is refused."""
    data = _datalist()
    text = json.dumps(data).replace('"image": "imagesTr/a.nii.gz"', f'"id": {written}, "image": "imagesTr/a.nii.gz"', 1)
    path = datalist_dir / "ids.json"
    path.write_text(text)
    with pytest.raises(DataError, match=r"ids.json: training\[0\] has the id .*, which is not text; write it "
                                        r"as a string \(in quotes\)$"):
        open_dataset(path)
    path.write_text(json.dumps(data).replace('"image": "imagesTr/a.nii.gz"', '"id": 17, "image": "imagesTr/a.nii.gz"', 1))
    assert open_dataset(path).labeled[0].case_id == "17"


def test_unparseable_datalist(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"training": [')
    with pytest.raises(DataError, match="cannot parse datalist"):
        open_dataset(path)


def test_load_case_errors(datalist_dir: Path, tmp_path: Path) -> None:
    img = datalist_dir / "imagesTr" / "a.nii.gz"
    short = tmp_path / "short.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 11), np.uint8), RAS_AFFINE), str(short))
    with pytest.raises(DataError, match=r"short.nii.gz: the label is not on the grid of its image a.nii.gz "
                                        r"\(shape \(20, 18, 11\) in LPS order does not match the image's "
                                        r"\(20, 18, 12\) in LPS order\)"):
        load_case(Case("a", img, short))
    frac = tmp_path / "frac.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 18, 12), 0.5, np.float32), RAS_AFFINE), str(frac))
    with pytest.raises(DataError, match="label values must be integers, got 0.5"):
        load_case(Case("a", img, frac))
    with pytest.raises(DataError, match="file not found"):
        load_case(Case("a", tmp_path / "missing.nii.gz"))
    with pytest.raises(DataError, match="not a NIfTI, NRRD or HDF5 file"):
        load_case(Case("a", tmp_path / "image.png"))
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), str(four_d))
    with pytest.raises(DataError, match="is 4D"):
        read_array(four_d)


def test_nrrd_space_conventions() -> None:
    m = np.array([[0.5, 0.0, 0.0], [0.0, 0.6, 0.1], [0.0, 0.0, 2.0]])  # rows: axis steps
    origin = np.array([10.0, -20.0, 5.0])
    base = {"space directions": m, "space origin": origin}
    lps = nrrd_affine({**base, "space": "left-posterior-superior"})
    np.testing.assert_allclose(lps[:3, :3], np.diag([-1, -1, 1]) @ m.T)
    np.testing.assert_allclose(lps[:3, 3], [-10.0, 20.0, 5.0])
    ras = nrrd_affine({**base, "space": "RAS"})
    np.testing.assert_allclose(ras[:3, :3], m.T)
    las = nrrd_affine({**base, "space": "left-anterior-superior"})
    np.testing.assert_allclose(las[0, :3], -m.T[0])
    np.testing.assert_allclose(nrrd_affine({"spacings": np.array([1.5, 2.0, 3.0])}), np.diag([1.5, 2.0, 3.0, 1.0]))
    np.testing.assert_allclose(nrrd_affine({}), np.eye(4))


def test_prediction_written_back_in_place(datalist_dir: Path, tmp_path: Path) -> None:
    """A mask saved with a volume's affine lands on the same world coordinates as the source scan."""
    vol = load_case(Case("b", datalist_dir / "imagesTr" / "b.nrrd", datalist_dir / "labelsTr" / "b.nrrd"))
    out = save_nifti(tmp_path / "pred" / "b_pred.nii.gz", vol.label, vol.affine)  # type: ignore[arg-type]
    back = nib.load(str(out))
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    assert int(back.header["sform_code"]) == 1 and int(back.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.asarray(back.dataobj), vol.label)
    # voxel (5, 4, 3) of the prediction sits where the NRRD header places that voxel
    _, header = nrrd.read(str(datalist_dir / "imagesTr" / "b.nrrd"))
    lps_world = header["space origin"] + np.array([5, 4, 3]) @ header["space directions"]
    ras_world = back.affine @ np.array([5, 4, 3, 1.0])
    np.testing.assert_allclose(ras_world[:3], lps_world * np.array([-1, -1, 1]), atol=1e-5)


def _hand_written_nrrd(path: Path, header_lines: list[str]) -> np.ndarray:
    """An NRRD written byte by byte (not through pynrrd): 4 x 3 x 2 uint8 voxels 0..23, x fastest."""
    data = np.arange(24, dtype=np.uint8)
    head = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 3 2\nencoding: raw\n" + "".join(
        line + "\n" for line in header_lines
    )
    path.write_bytes(head.encode() + b"\n" + data.tobytes())
    return data.reshape((2, 3, 4)).transpose(2, 1, 0)  # [x, y, z] = x + 4 y + 12 z


def test_nrrd_affine_from_hand_written_space_directions(tmp_path: Path) -> None:
    """Space directions and origin typed by hand, the expected RAS affine written out by hand."""
    path = tmp_path / "lps.nrrd"
    expected_array = _hand_written_nrrd(path, [
        "space: left-posterior-superior",
        "space directions: (0,0.7,0) (-0.8,0,0) (0,0,1.5)",
        "space origin: (10,20,30)",
        "kinds: domain domain domain",
    ])
    # voxel axis 0 steps 0.7 mm posterior (-0.7 in RAS y), axis 1 steps 0.8 mm right (LPS x = -0.8
    # is 0.8 mm to the right), axis 2 steps 1.5 mm superior; the origin (10, 20, 30) LPS is
    # (-10, -20, 30) RAS.
    expected_affine = np.array([
        [0.0, 0.8, 0.0, -10.0],
        [-0.7, 0.0, 0.0, -20.0],
        [0.0, 0.0, 1.5, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    array, affine, spacing = read_array(path)
    np.testing.assert_array_equal(array, expected_array)
    np.testing.assert_allclose(affine, expected_affine, atol=1e-12)
    assert spacing == pytest.approx((0.7, 0.8, 1.5))
    geometry = read_geometry(path)
    assert geometry.unit == "mm" and geometry.oriented and geometry.axcodes == "PRS"
    np.testing.assert_allclose(geometry.affine, expected_affine, atol=1e-12)
    assert geometry.shape == (4, 3, 2)


def test_nrrd_without_space_directions_has_no_voxel_size_or_orientation(tmp_path: Path) -> None:
    bare = tmp_path / "bare.nrrd"
    _hand_written_nrrd(bare, [])
    _, geometry = read_volume(bare)
    assert geometry.unit == "voxels" and not geometry.oriented and geometry.axcodes is None
    assert geometry.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(geometry.affine, np.eye(4))
    spaced = tmp_path / "spaced.nrrd"
    _hand_written_nrrd(spaced, ["spacings: 0.5 0.5 2"])
    _, geometry = read_volume(spaced)
    assert geometry.unit == "mm" and not geometry.oriented and geometry.spacing == (0.5, 0.5, 2.0)
    vol = load_case(Case("bare", bare, bare))
    assert vol.spacing_unit == "voxels" and not vol.oriented


def test_a_complex_valued_image_is_refused(tmp_path: Path) -> None:
    import nibabel as nib

    from canet.data import read_volume

    data = (np.ones((6, 6, 6)) * (1 + 2j)).astype(np.complex64)  # numpy would keep only the real part
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "c.nii.gz"))
    with pytest.raises(DataError, match=r"c.nii.gz: image holds complex values \(complex64\); canet reads real-valued"):
        read_volume(tmp_path / "c.nii.gz")


def test_an_rgb_or_string_volume_is_refused_in_one_line(tmp_path: Path) -> None:
    import h5py
    import nibabel as nib

    from canet.data import read_volume

    rgb = np.zeros((6, 6, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])  # an RGB NIfTI (datatype 128)
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(DataError, match=r"rgb.nii.gz: image has dtype .*not one number per voxel"):
        read_volume(tmp_path / "rgb.nii.gz")
    from canet.evaluation.files import image_file_shape

    with pytest.raises(DataError, match=r"rgb.nii.gz: image has dtype .*not one number per voxel"):
        image_file_shape(tmp_path / "rgb.nii.gz")  # predict's check of every input before the first is segmented
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["image"] = np.full((6, 6, 4), b"ab", dtype="S2")
    with pytest.raises(DataError, match=r"s.h5: image has dtype \|S2, not one number per voxel"):
        read_volume(tmp_path / "s.h5")
