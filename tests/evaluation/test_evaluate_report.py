"""evaluate_model / evaluate and the HTML report."""

from __future__ import annotations

import base64
import csv
import json
import re
from html import escape as html_escape
from types import SimpleNamespace
from typing import NamedTuple

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.errors import CanetError
from canet.evaluation import evaluate_model
from canet.metrics import binary_metrics
from canet.models import create_model
from canet.report import load_training_metrics, render_case_png, save_case_slices


class FakeOutput(NamedTuple):
    seg: Tensor
    sdf: Tensor


class Threshold(nn.Module):
    """Logits = 8 * (x - 0.5): predicts x > 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(8.0))

    def forward(self, x: Tensor) -> FakeOutput:
        seg = self.w * (x - 0.5)
        return FakeOutput(seg, torch.tanh(seg))


def _volumes(n: int = 3, shape=(30, 26, 18)):
    rng = np.random.default_rng(0)
    vols = []
    for i in range(n):
        label = np.zeros(shape, np.uint8)
        label[6:20, 5:18, 4:14] = 1
        image = label.astype(np.float32) + rng.normal(0, 0.25 + 0.1 * i, shape).astype(np.float32)
        affine = np.diag([0.9, 0.8, 1.5, 1.0])
        vols.append(SimpleNamespace(case_id=f"case{i}", image=image, label=label, affine=affine, spacing=(0.9, 0.8, 1.5)))
    return vols


def test_evaluate_model_writes_metrics_predictions_and_report(tmp_path) -> None:
    vols = _volumes()
    out = tmp_path / "eval"
    summary = evaluate_model(
        Threshold(), vols, (16, 16, 8), out_dir=out, mode="fast", spacing="mm",
        save_predictions=True, report=True,
    )
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"]
    for vol, row in zip(vols, rows):
        pred = nib.load(str(out / f"{vol.case_id}_pred.nii.gz"))
        np.testing.assert_allclose(pred.affine, vol.affine)
        mask = np.asarray(pred.dataobj)
        expected = binary_metrics(mask, vol.label, vol.spacing)
        assert float(row["dice"]) == pytest.approx(expected["dice"])
        assert float(row["hd95"]) == pytest.approx(expected["hd95"])
        assert float(row["seconds"]) > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["cases"] == 3 and on_disk["mode"] == "fast" and on_disk["spacing"] == "mm"
    assert on_disk["dice"]["mean"] == pytest.approx(summary["dice"]["mean"])
    assert sorted(p.name for p in (out / "report_slices").iterdir()) == ["case0.npz", "case1.npz", "case2.npz"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    # worst Dice first in the case images
    order = sorted(rows, key=lambda r: float(r["dice"]))
    positions = [page.index(f'alt="{r["case"]}"') for r in order]
    assert positions == sorted(positions)


def test_evaluate_model_voxels_and_errors(tmp_path) -> None:
    vols = _volumes(1)
    s = evaluate_model(Threshold(), vols, (16, 16, 8), spacing="voxels")
    mask_metrics = s["rows"][0]
    assert s["spacing"] == "voxels" and mask_metrics["hd95"] >= 0
    vols[0].label = None
    from canet.errors import CanetError

    with pytest.raises(CanetError, match="has no label"):
        evaluate_model(Threshold(), vols, (16, 16, 8))
    with pytest.raises(CanetError, match="spacing must be"):
        evaluate_model(Threshold(), _volumes(1), (16, 16, 8), spacing="cm")


def test_case_png_is_drawn_from_the_slices(tmp_path) -> None:
    vol = _volumes(1, shape=(40, 30, 20))[0]
    pred = np.roll(vol.label, 2, axis=0)
    path = save_case_slices(tmp_path / "s.npz", "case0", vol.image, vol.label, pred, vol.spacing, 0.8)
    with np.load(path) as data:
        # centroid of label[6:20, 5:18, 4:14] is (12.5, 11, 8.5), rounded half to even
        assert list(data["centroid"]) == [12, 11, 8]
        assert data["image_axial"].shape == (40, 30) and data["gt_coronal"].shape == (40, 20)
        assert data["pred_sagittal"].shape == (30, 20)
        np.testing.assert_array_equal(data["gt_axial"], vol.label[:, :, 8])
        np.testing.assert_array_equal(data["pred_sagittal"], pred[12])
    png = render_case_png(path)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_case_slices_of_a_structure_in_two_parts_show_it(tmp_path) -> None:
    # two blocks on opposite corners: the centroid (14.5, 14.5, 8.5), rounded half to even (14, 14, 8),
    # lies in none of the planes that hold them
    gt = np.zeros((30, 30, 18), np.uint8)
    gt[2:8, 2:8, 2:6] = 1
    gt[22:28, 22:28, 12:16] = 1
    image = np.zeros(gt.shape, np.float32)
    path = save_case_slices(tmp_path / "s.npz", "c", image, gt, gt, None, 1.0)
    with np.load(path) as data:
        # each coordinate moved to the nearest slice holding the mask: x and y 14 -> 7 (|7 - 14| = 7 against
        # |22 - 14| = 8), z 8 -> 5 (3 against 4)
        assert list(data["centroid"]) == [7, 7, 5]
        assert all(data[f"gt_{plane}"].any() for plane in ("axial", "coronal", "sagittal"))


def test_case_slices_keep_label_values_above_255(tmp_path) -> None:
    # a uint16 label marking its object 256 (the Python API takes it): uint8 slices turned it into 0,
    # and the page showed a perfect case as a prediction with no ground truth
    vol = _volumes(1, shape=(40, 30, 20))[0]
    gt = vol.label.astype(np.uint16) * 256
    path = save_case_slices(tmp_path / "s.npz", "c", vol.image, gt, gt != 0, vol.spacing, 1.0)
    with np.load(path) as data:
        assert data["gt_axial"].max() == 256 and data["gt_axial"].any()
        assert data["pred_axial"].dtype == np.uint8  # 0/1 masks stay small


@pytest.mark.parametrize("case", ["a$^$b", "case$1$", "<b>&\"x'"])
def test_case_names_are_drawn_and_labelled_as_given(tmp_path, run_cli, case) -> None:
    # matplotlib reads $...$ as a formula: 'a$^$b' made the report fail, 'case$1$' was drawn as 'case1'
    out = tmp_path / "eval"
    evaluate_model(Threshold(), [SimpleNamespace(**{**vars(_volumes(1)[0]), "case_id": case})], (16, 16, 8),
                   out_dir=out, mode="fast", spacing="mm", report=True)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('alt="' + html_escape(case) + '"') == 1


def test_a_case_id_from_a_file_name_that_is_not_utf8_is_drawn(tmp_path, run_cli) -> None:
    """'scan\\udcff' (a file name with the byte 0xff) made the figure title raise after every case was scored."""
    out = tmp_path / "eval"
    vol = SimpleNamespace(**{**vars(_volumes(1)[0]), "case_id": "scan\udcff"})
    evaluate_model(Threshold(), [vol], (16, 16, 8), out_dir=out, mode="fast", spacing="mm", report=True)
    assert (out / "report.html").is_file()
    code, _, err = run_cli("report", out)
    assert code == 0, err


def test_worst_cases_first_and_cases_without_a_dice_last(tmp_path) -> None:
    """A case whose masks are both empty has no Dice (nothing to miss); it sorted before a missed one (Dice 0)."""
    vols = _volumes(3)
    vols[0].case_id, vols[0].label, vols[0].image = "both_empty", np.zeros_like(vols[0].label), np.zeros_like(vols[0].image)
    vols[1].case_id, vols[1].image = "missed", np.zeros_like(vols[1].image)
    vols[2].case_id = "good"
    out = tmp_path / "eval"
    evaluate_model(Threshold(), vols, (16, 16, 8), out_dir=out, mode="fast", spacing="mm", report=True)
    page = (out / "report.html").read_text(encoding="utf-8")
    table = page[page.index("Per case (worst Dice first)"):page.index("Cases (worst Dice first)")]
    images = page[page.index("Cases (worst Dice first)"):]
    for part in (table, images):
        order = sorted(("missed", "good", "both_empty"), key=part.index)
        assert order == ["missed", "good", "both_empty"], part[:200]


def test_the_page_shows_what_the_summary_warns_and_each_class(tmp_path, run_cli) -> None:
    """Warnings of summary.json, and a multi-class evaluation's per-class means, were not on the page."""
    rows = [{"case": "a", "dice": 0.9, "jaccard": 0.8, "hd95": float("nan"), "asd": float("nan"),
             "dice_1": 0.8, "jaccard_1": 0.7, "hd95_1": 2.0, "asd_1": 1.0,
             "dice_2": 0.0, "jaccard_2": 0.0, "hd95_2": float("nan"), "asd_2": float("nan")}]
    out = tmp_path / "eval"
    out.mkdir()
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stat = {"mean": 0.8, "std": 0.0, "n": 1, "nan": 0}
    summary = {
        "cases": 1, "num_classes": 3, "spacing": "mm", "distance_unit": "mm", "empty_pred": 1, "empty_gt": 0,
        "dice": stat, "jaccard": stat, "hd95": {"mean": None, "std": None, "n": 0, "nan": 1}, "asd": stat,
        "per_class": {"1": {"dice": {"mean": 0.8125, "std": 0.0, "n": 1, "nan": 0}, "jaccard": stat, "hd95": stat,
                            "asd": stat},
                      "2": {"dice": {"mean": 0.0, "std": 0.0, "n": 1, "nan": 0}, "jaccard": stat,
                            "hd95": {"mean": None, "std": None, "n": 0, "nan": 1}, "asd": stat}},
        "absent_classes": {"1": 0, "2": 3},
        "warnings": ["case 'a': voxel size (2, 2, 2) mm differs from the training data's by 60 % <check>"],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    code, _, err = run_cli("report", out)
    assert code == 0, err
    page = (out / "report.html").read_text(encoding="utf-8")
    assert '<p class="warning">case &#x27;a&#x27;: voxel size (2, 2, 2) mm differs from the training data&#x27;s by 60 % ' \
           '&lt;check&gt;</p>' in page
    assert "<h3>Per class</h3>" in page
    assert "<tr><td>1</td><td>0.8125 &plusmn; 0.0000</td>" in page
    assert "<tr><td>2</td><td>0.0000 &plusmn; 0.0000</td>" in page and "<td>3</td></tr>" in page  # absent in 3
    assert "cases with a class missed: 1" in page and "empty_pred" not in page
    assert "<th>hd95_2 (mm)</th>" in page


def test_report_of_a_folder_whose_name_is_not_utf8(tmp_path, run_cli) -> None:
    out = tmp_path / "ev\udcff"  # the name Python gives a folder called b'ev\xff'
    evaluate_model(Threshold(), _volumes(2), (16, 16, 8), out_dir=out, mode="fast", spacing="mm")
    code, _, err = run_cli("report", out)
    assert code == 0, err
    assert "ev\\udcff" in (out / "report.html").read_text(encoding="utf-8")
    (out / "summary.json").write_text("[1, 2]")
    code, _, err = run_cli("report", out)
    assert code == 2 and err.count("\n") == 1 and "is not a canet summary" in err


def test_run_folder_report_with_training_curves(tmp_path, run_cli) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "iteration,loss,loss_seg,lr,val_dice\n"
        "10,1.0,0.8,0.01,\n20,0.7,0.5,0.009,0.61\n30,0.5,0.4,0.008,\n40,0.4,,0.007,0.72\n"
    )
    curves = load_training_metrics(run / "metrics.csv")
    np.testing.assert_array_equal(curves["val_dice"][0], [20, 40])
    np.testing.assert_array_equal(curves["loss_seg"][1], [0.8, 0.5, 0.4])
    evaluate_model(Threshold(), _volumes(2), (16, 16, 8), out_dir=run / "eval", report=True)
    code, out, err = run_cli("report", run)
    assert code == 0, err
    page = (run / "report.html").read_text()
    assert "Training curves" in page and "Metrics" in page and "case0" in page
    images = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)
    assert len(images) == 3 + 2  # losses, learning rate, validation + two cases
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained
    # -o naming the table the report is made from: refused, the table kept
    table = (run / "eval" / "metrics.csv").read_text()
    code, _, err = run_cli("report", run / "eval", "-o", run / "eval" / "metrics.csv")
    assert code == 2 and err == f"error: the report is an HTML page: -o must name a .html file, got {run / 'eval' / 'metrics.csv'}\n"
    assert (run / "eval" / "metrics.csv").read_text() == table

    # the evaluation scored iteration 20's weights, the curves go on to 40 (a run resumed after it): said
    summary = json.loads((run / "eval" / "summary.json").read_text())
    for scored, said in ((20, True), (40, False), (None, False)):
        (run / "eval" / "summary.json").write_text(json.dumps({**summary, "checkpoint_iteration": scored}))
        assert run_cli("report", run)[0] == 0
        page = (run / "report.html").read_text()
        assert ("The metrics above are of the checkpoint of iteration 20; the curves go on to iteration 40."
                in page) is said, scored
    (run / "eval" / "summary.json").write_text(json.dumps(summary))

    # an evaluation folder alone also works; a folder with neither fails in one line
    code, _, err = run_cli("report", run / "eval", "-o", tmp_path / "eval.html")
    assert code == 0 and (tmp_path / "eval.html").is_file()
    (tmp_path / "nothing").mkdir()
    code, _, err = run_cli("report", tmp_path / "nothing")
    assert code == 2 and "neither an evaluation" in err and err.count("\n") == 1
    code, _, err = run_cli("report", run / "eval" / "summary.json")  # a file of the folder, not the folder
    assert code == 2 and err == f"error: {run / 'eval' / 'summary.json'} is a file; give a run folder or an evaluation folder\n"


def _write_la_root(root, ids, shape=(40, 36, 20)) -> None:
    rng = np.random.default_rng(0)
    for i, case in enumerate(ids):
        folder = root / "2018LA_Seg_Training Set" / case
        folder.mkdir(parents=True)
        label = np.zeros(shape, np.uint8)
        label[8 + i : 28, 8:26, 4:16] = 1
        image = (label * 2.0 + rng.normal(0, 1, shape)).astype(np.float32)
        with h5py.File(folder / "mri_norm2.h5", "w") as f:
            f.create_dataset("image", data=image, compression="gzip")
            f.create_dataset("label", data=label, compression="gzip")
    (root / "train.list").write_text("\n".join(ids[:2]) + "\n")
    (root / "test.list").write_text("\n".join(ids[2:]) + "\n")


def test_evaluate_command_on_an_la_folder(tmp_path, run_cli) -> None:
    root = tmp_path / "LA"
    _write_la_root(root, ["T0", "T1", "E0", "E1"])
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=2)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]}), ckpt)
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        "evaluate", ckpt, "--data", root, "--out", out, "--mode", "reference",
        "--save-predictions", "--report", "--quiet", "--no-lcc",
    )
    assert code == 0, err
    assert "dice" in stdout and "cases: 2" in stdout
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["E0", "E1"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 2 and summary["mode"] == "reference" and summary["spacing"] == "voxels"
    assert summary["checkpoint"] == str(ckpt) and summary["patch_size"] == [32, 32, 16]
    assert (out / "E0_pred.nii.gz").is_file() and (out / "report.html").is_file()

    code, _, err = run_cli("evaluate", tmp_path / "none.pt", "--data", root, "--out", out)
    assert code == 2 and "checkpoint not found" in err and err.count("\n") == 1


def test_evaluate_fast_mode_records_its_weighting(tmp_path, run_cli) -> None:
    root = tmp_path / "LA"
    _write_la_root(root, ["T0", "T1", "E0"])
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=2), "tests", config={"patch_size": [32, 32, 16]}), ckpt)
    for weighting in ("constant", "gaussian"):
        out = tmp_path / weighting
        code, _, err = run_cli(
            "evaluate", ckpt, "--data", root, "--out", out, "--weighting", weighting,
            "--overlap", "0.25", "--quiet",
        )
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["mode"] == "fast" and summary["weighting"] == weighting and summary["overlap"] == 0.25

    with pytest.raises(SystemExit) as exc:  # argparse: one error line, status 2
        run_cli("evaluate", ckpt, "--data", root, "--out", tmp_path / "x", "--weighting", "cosine")
    assert exc.value.code == 2


def test_evaluate_model_rejects_an_unknown_weighting(tmp_path) -> None:
    with pytest.raises(CanetError, match="weighting must be one of gaussian, constant, got 'cosine'"):
        evaluate_model(Threshold(), [], (16, 16, 8), weighting="cosine")


# --------------------------------------------------------------------------- datalists


def _centred_vnet(image: np.ndarray, patch=(32, 32, 16)) -> nn.Module:
    """A random V-Net (no symmetry under flips or transposes) centred so that half of ``image`` is foreground."""
    from canet.inferers import predict_volume

    torch.manual_seed(1)
    model = create_model("vnet", n_filters=2)
    _, prob = predict_volume(model, image, patch, lcc=False)
    median = float(np.median(prob))
    with torch.no_grad():
        model.head_seg.bias -= float(np.log(median / (1 - median)))
    return model


def _case_arrays(shape=(36, 34, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    label = np.zeros(shape, np.uint8)
    label[6:24, 8:20, 4:14] = 1
    image = (rng.normal(0, 1, shape) + 2.0 * label).astype(np.float32)
    return image, label


def _datalist(root, cases: dict, **extra) -> object:
    """Write ``{name: (image, label, affine)}`` as NIfTI files and a datalist whose test split holds them."""
    entries = []
    for name, (image, label, affine) in cases.items():
        nib.save(nib.Nifti1Image(image, affine), str(root / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / f"{name}_seg.nii.gz"))
        entries.append({"image": f"{name}.nii.gz", "label": f"{name}_seg.nii.gz"})
    path = root / "dataset.json"
    path.write_text(json.dumps({"training": entries, "test": entries, **extra}))
    return path


RAS_RECORD = {"normalize": "zscore", "orientation": "RAS", "spacing": [0.8, 0.9, 1.5], "lcc": True,
              "dataset": "datalist"}


def _ras_checkpoint(model: nn.Module, path):
    """``model`` saved as a checkpoint trained on z-scored RAS volumes (patch 32 x 32 x 16); returns ``path``."""
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]},
                                    preprocessing=RAS_RECORD), path)
    return path


@pytest.mark.slow
def test_evaluate_predicts_in_the_training_orientation(tmp_path, run_cli) -> None:
    """A test case stored flipped and permuted is predicted as its RAS original, scored in its own order."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    from canet.data import zscore
    from canet.inferers import predict_volume

    image, label = _case_arrays()
    model = _centred_vnet(zscore(image))
    ckpt = _ras_checkpoint(model, tmp_path / "m.pt")
    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    turn = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(("P", "S", "L")))
    copy = nib.Nifti1Image(image, affine).as_reoriented(turn)
    (tmp_path / "d").mkdir()
    datalist = _datalist(tmp_path / "d", {
        "ras": (image, label, affine),
        "psl": (np.asarray(copy.dataobj), apply_orientation(label, turn), copy.affine),
    })
    out = tmp_path / "out"
    code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", out, "--save-predictions", "--quiet",
                           "--no-lcc")
    assert code == 0, err
    expected, _ = predict_volume(model, zscore(image), (32, 32, 16), lcc=False)
    assert 0.4 < expected.mean() < 0.6
    rows = {r["case"]: r for r in csv.DictReader(open(out / "metrics.csv", newline=""))}
    want = binary_metrics(expected, label, (0.8, 0.9, 1.5))
    for case in ("ras", "psl"):
        assert float(rows[case]["dice"]) == pytest.approx(want["dice"], abs=1e-12), case
        assert float(rows[case]["hd95"]) == pytest.approx(want["hd95"], rel=1e-6), case  # float32 header
    saved = nib.load(str(out / "psl_pred.nii.gz"))
    np.testing.assert_array_equal(np.asarray(saved.dataobj), apply_orientation(expected, turn))
    np.testing.assert_allclose(saved.affine, copy.affine, atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["orientation"] == "RAS" and summary["reoriented"] == 1 and summary["warnings"] == []
    assert summary["distance_unit"] == "mm" and summary["normalize"] == "zscore"


@pytest.mark.slow
def test_evaluate_datalist_lcc_default_and_label_values(tmp_path, run_cli) -> None:
    image, label = _case_arrays()
    model = _centred_vnet(image)  # the datalist below is z-scored on load; any model will do here
    ckpt = _ras_checkpoint(model, tmp_path / "m.pt")
    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    (tmp_path / "d").mkdir()
    # the ground truth stores the object as 255 (as the LA challenge's laendo.nrrd does)
    datalist = _datalist(tmp_path / "d", {"a": (image, label * 255, affine)})
    for extra, lcc, source in (((), False, "dataset"), (("--lcc",), True, "option")):
        out = tmp_path / f"out{lcc}"
        code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", out, "--quiet",
                               "--save-predictions", *extra)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["lcc"] is lcc and summary["lcc_from"] == source and summary["num_classes"] == 2
        mask = np.asarray(nib.load(str(out / "a_pred.nii.gz")).dataobj)
        assert summary["dice"]["mean"] == pytest.approx(binary_metrics(mask, label)["dice"], abs=1e-12)
    data = json.loads(datalist.read_text())
    data["postprocess"] = {"lcc": True}
    datalist.write_text(json.dumps(data))
    code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", tmp_path / "o3", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "o3" / "summary.json").read_text())["lcc"] is True

    two = label.copy()
    two[30:34, 2:6, 2:6] = 2  # a second class in a binary dataset: refused, not merged
    datalist = _datalist(tmp_path / "d", {"a": (image, two, affine)})
    code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", tmp_path / "o4", "--quiet")
    assert code == 2 and err.count("\n") == 1
    assert "case 'a': ground truth holds values {1, 2}, but the task is binary" in err


def test_evaluate_nrrd_without_space_directions_reports_voxels(tmp_path, run_cli) -> None:
    import nrrd

    image, label = _case_arrays()
    model = _centred_vnet(image)
    ckpt = _ras_checkpoint(model, tmp_path / "m.pt")
    nrrd.write(str(tmp_path / "a.nrrd"), image, {"kinds": ["domain"] * 3})
    nrrd.write(str(tmp_path / "a_seg.nrrd"), label, {"kinds": ["domain"] * 3})
    path = tmp_path / "dataset.json"
    entry = {"image": "a.nrrd", "label": "a_seg.nrrd"}
    path.write_text(json.dumps({"training": [entry], "test": [entry]}))
    code, stdout, err = run_cli("evaluate", ckpt, "--data", path, "--out", tmp_path / "o", "--quiet",
                                "--save-predictions")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["distance_unit"] == "voxels" and summary["reoriented"] == 0
    assert "distances in voxels" in stdout
    # the checkpoint was trained on RAS images; this file cannot say whether it is one: evaluate says so, as predict
    said = "case 'a': the file states no orientation; predicted in its stored voxel order"
    assert summary["warnings"] == [said] and err.strip().splitlines() == [f"warning: {said}"]
    mask = np.asarray(nib.load(str(tmp_path / "o" / "a_pred.nii.gz")).dataobj)
    assert summary["hd95"]["mean"] == pytest.approx(binary_metrics(mask, label)["hd95"])  # voxel units


def _perfect_case(model: nn.Module, image: np.ndarray) -> np.ndarray:
    """The mask ``model`` predicts for ``image`` (z-scored, no LCC): a ground truth it gets exactly right."""
    from canet.data import zscore
    from canet.inferers import predict_volume

    mask, _ = predict_volume(model, zscore(image), (32, 32, 16), lcc=False)
    assert 0.3 < mask.mean() < 0.7  # a real mask, not an empty or full one
    return mask


def _rows(folder) -> dict[str, dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as fh:
        return {r["case"]: {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_labels_stored_flipped_give_the_same_evaluation(tmp_path, run_cli) -> None:
    """A copy of a dataset whose labels are stored flipped / permuted (affines to match) scores the same: Dice 1."""
    from nibabel.orientations import axcodes2ornt, ornt_transform

    from canet.data import zscore

    image, _ = _case_arrays()
    model = _centred_vnet(zscore(image))
    ckpt = _ras_checkpoint(model, tmp_path / "m.pt")
    truth = _perfect_case(model, image)
    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    for name in ("plain", "flipped"):
        (tmp_path / name).mkdir()
    plain = _datalist(tmp_path / "plain", {"a": (image, truth, affine), "b": (image, truth, affine)})
    flipped = _datalist(tmp_path / "flipped", {"a": (image, truth, affine), "b": (image, truth, affine)})
    for case, codes in (("a", ("L", "P", "I")), ("b", ("S", "L", "A"))):  # labels rewritten in other orders
        turn = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(codes))
        nib.save(nib.Nifti1Image(truth, affine).as_reoriented(turn), str(tmp_path / "flipped" / f"{case}_seg.nii.gz"))
    outs = {}
    for name, datalist in (("plain", plain), ("flipped", flipped)):
        outs[name] = tmp_path / f"ev_{name}"
        code, _, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", outs[name], "--quiet", "--no-lcc")
        assert code == 0, err
    assert _rows(outs["flipped"]) == _rows(outs["plain"])
    for row in _rows(outs["plain"]).values():
        assert float(row["dice"]) == 1.0 and float(row["hd95"]) == 0.0 and float(row["asd"]) == 0.0


@pytest.mark.slow
def test_evaluate_warns_about_nan_voxels_and_voxel_size(tmp_path, run_cli) -> None:
    """One NaN voxel: filled, named with its count, the mask is the filled scan's (not empty); spacing warned."""
    from canet.data import zscore

    image, _ = _case_arrays()
    model = _centred_vnet(zscore(image))
    ckpt = _ras_checkpoint(model, tmp_path / "m.pt")
    holed = image.copy()
    holed[0, 0, 0] = np.nan  # padding outside the field of view
    filled = image.copy()
    filled[0, 0, 0] = np.nanmin(holed)  # what the NaN becomes: the scan's smallest finite value
    truth = _perfect_case(model, filled)
    (tmp_path / "d").mkdir()
    datalist = _datalist(tmp_path / "d", {
        "holed": (holed, truth, np.diag([0.8, 0.9, 1.5, 1.0])),
        "coarse": (image, truth, np.diag([0.8, 1.2, 1.5, 1.0])),  # y 33 % larger than the training data's
    })
    code, stdout, err = run_cli("evaluate", ckpt, "--data", datalist, "--out", tmp_path / "o", "--quiet", "--no-lcc")
    assert code == 0, err
    said = [
        "case 'holed': 1 NaN or infinite voxel(s) set to the scan's smallest finite value before normalising "
        "(padding outside the field of view?)",
        "case 'coarse': voxel size (0.8, 1.2, 1.5) mm differs from the training data's (0.8, 0.9, 1.5) mm by "
        "33%; resample it to that size for reliable results",
    ]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert sorted(summary["warnings"]) == sorted(said)
    assert sorted(err.strip().splitlines()) == sorted(f"warning: {m}" for m in said)
    assert float(_rows(tmp_path / "o")["holed"]["dice"]) == 1.0


def test_predict_volume_refuses_nan_input() -> None:
    from canet.errors import DataError
    from canet.inferers import predict_volume

    image = np.zeros((20, 20, 10), np.float32)
    image[3, 4, 5] = np.nan
    image[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="image holds 2 NaN or infinite voxel"):
        predict_volume(Threshold(), image, (16, 16, 8))


def test_unrelated_training_columns_get_a_panel_each(monkeypatch) -> None:
    """s/it near 2 and an adversarial weight near 1e-4 on one axis: the weight drew as a flat line at 0."""
    from canet.report import html as report_html

    figures = []
    monkeypatch.setattr(report_html, "_figure_png", lambda fig: figures.append(fig) or b"png")
    x = np.arange(1.0, 11.0)
    metrics = {"loss": (x, 1 / x), "lr": (x, np.full(10, 0.01)), "sec_per_it": (x, np.full(10, 2.3)),
               "adv_weight": (x, 1e-4 * x)}
    groups = [g for g, _ in report_html.plot_training_curves(metrics)]
    assert groups == ["losses", "learning rate", "other"]
    other = figures[-1]
    assert len(other.axes) == 2
    lows = sorted(ax.get_ylim()[0] for ax in other.axes)
    assert lows[0] < 2e-4 and lows[1] > 1.0  # each axis spans its own column's values
    assert [len(f.axes) for f in figures[:2]] == [1, 1]


def test_slice_titles_name_the_plane_the_voxel_order_makes() -> None:
    """The x-y slice of a scan stored as sagittal sections (PSR) is sagittal, not axial; without an
    orientation only the array axes are named."""
    from canet.report.html import plane_name

    assert [plane_name(p, "RAS") for p in ("axial", "coronal", "sagittal")] == [
        "axial (x-y)", "coronal (x-z)", "sagittal (y-z)"]
    # PSR: x runs posterior, y superior, z right: the x-y slice is cut across z (left-right)
    assert [plane_name(p, "PSR") for p in ("axial", "coronal", "sagittal")] == [
        "sagittal (x-y)", "axial (x-z)", "coronal (y-z)"]
    assert plane_name("axial", "") == "x-y plane (orientation not stated)"


def test_evaluation_keeps_the_orientation_its_slices_are_named_by(tmp_path) -> None:
    vol = _volumes(1)[0]
    vol.affine = np.array([[0, 0, 1.5, 0], [-0.9, 0, 0, 0], [0, 0.8, 0, 0], [0, 0, 0, 1.0]])  # PSR
    evaluate_model(Threshold(), [vol], (16, 16, 8), out_dir=tmp_path / "e", mode="fast", spacing="mm", report=True)
    with np.load(tmp_path / "e" / "report_slices" / "case0.npz") as data:
        assert str(data["axcodes"]) == "PSR"
    unoriented = SimpleNamespace(**{**vars(_volumes(1)[0]), "oriented": False})
    evaluate_model(Threshold(), [unoriented], (16, 16, 8), out_dir=tmp_path / "u", mode="fast", spacing="mm",
                   report=True)
    with np.load(tmp_path / "u" / "report_slices" / "case0.npz") as data:
        assert "axcodes" not in data.files
