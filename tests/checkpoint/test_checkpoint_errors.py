"""Files that are not checkpoints end in one line naming them, never in PyTorch's weights_only advice."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from canet.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    read_torch_file,
    save_checkpoint,
    torch_file_kind,
)
from canet.cli.main import main
from canet.errors import CheckpointError
from canet.models import create_model


class NotAllowed:
    """A class that weights_only loading refuses to rebuild."""


def _text(path: Path) -> None:
    path.write_text("learning_rate: 0.01\nthis is a config, not weights\n", encoding="utf-8")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _nifti(path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(path))


NOT_CHECKPOINTS = {"text": ("notes.pt", _text), "empty": ("empty.pt", _empty), "nifti": ("scan.nii.gz", _nifti)}


@pytest.fixture()
def scan(tmp_path: Path) -> Path:
    path = tmp_path / "input" / "case1.nii.gz"
    path.parent.mkdir()
    _nifti(path)
    return path


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
def test_read_torch_file_names_a_file_that_is_not_a_checkpoint(tmp_path: Path, kind: str) -> None:
    name, write = NOT_CHECKPOINTS[kind]
    path = tmp_path / name
    write(path)
    assert torch_file_kind(path) is None
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path)
    assert str(err.value) == f"{path} is not a PyTorch checkpoint"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path} is not a PyTorch checkpoint"


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
def test_every_command_that_reads_a_checkpoint_says_so_in_one_line(tmp_path: Path, kind: str, scan: Path, capsys) -> None:
    name, write = NOT_CHECKPOINTS[kind]
    path = tmp_path / name
    write(path)
    expected = f"error: {path} is not a PyTorch checkpoint\n"
    commands = [
        ["predict", str(path), str(scan), "-o", str(tmp_path / "pred"), "--quiet"],
        ["evaluate", str(path), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "eval"), "--quiet"],
        ["import-checkpoint", str(path), str(tmp_path / "imported.pt")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.err == expected, argv
    assert not (tmp_path / "imported.pt").exists()


def test_a_discriminator_or_an_incomplete_checkpoint_is_one_line(tmp_path: Path, scan: Path, capsys) -> None:
    """canet checkpoints that hold no segmentation network: predict and evaluate say so, no traceback."""
    from canet.models import load_model

    dam = tmp_path / "dam.pt"
    save_checkpoint(make_checkpoint(create_model("dam"), "tests"), dam)
    whole = make_checkpoint(create_model("vnet", n_filters=2), "tests", config={"patch_size": [16, 16, 16]})
    no_weights, no_model = tmp_path / "no_weights.pt", tmp_path / "no_model.pt"
    save_checkpoint({k: v for k, v in whole.items() if k != "generator"}, no_weights)
    save_checkpoint({**whole, "model": "vnet"}, no_model)
    expected = {
        dam: f"{dam} holds the discriminator 'dam', not a segmentation network",
        no_weights: f"{no_weights} is an incomplete canet checkpoint: it holds no generator weights",
        no_model: f"{no_model} is an incomplete canet checkpoint: it records no model (name and arguments)",
    }
    for path, message in expected.items():
        for argv in (
            ["predict", str(path), str(scan), "-o", str(tmp_path / "pred"), "--quiet"],
            ["evaluate", str(path), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "eval"), "--quiet"],
        ):
            assert main(argv) == 2, argv
            assert capsys.readouterr().err == f"error: {message}\n", argv
        with pytest.raises(CheckpointError, match="^" + re.escape(message) + "$"):
            load_model(path)
    assert not (tmp_path / "pred").exists()


def test_the_message_reaches_the_terminal_without_a_traceback(tmp_path: Path, scan: Path) -> None:
    # The classic slip: the image given where the checkpoint goes.
    proc = subprocess.run(
        [sys.executable, "-m", "canet.cli.main", "predict", str(scan), str(scan), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: {scan} is not a PyTorch checkpoint\n"


def test_a_pytorch_file_with_pickled_objects_is_told_apart(tmp_path: Path, capsys) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"weights": torch.zeros(2), "extra": NotAllowed()}, path)
    assert torch_file_kind(path) == "zip"
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path)
    message = str(err.value)
    assert message == (
        f"{path} is a PyTorch file but holds objects that safe loading refuses "
        f"({__name__}.NotAllowed); canet reads checkpoints of tensors, numbers, strings and plain containers only"
    )
    assert main(["import-checkpoint", str(path), str(tmp_path / "out.pt")]) == 2
    err_text = capsys.readouterr().err
    assert err_text == f"error: {message}\n" and "weights_only" not in err_text


def test_a_truncated_checkpoint_is_damaged_not_foreign(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=4), "test"), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    assert torch_file_kind(cut) == "damaged"
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(cut)
    assert str(err.value) == f"cannot read checkpoint {cut}: a damaged or truncated file (no zip directory)"


def test_a_checkpoint_damaged_inside_a_tensor_is_refused_not_loaded(tmp_path: Path) -> None:
    """One flipped byte in a tensor's record: its zip directory is whole, torch.load does not check
    the CRC-32, and the model loaded with one weight changed, without a word."""
    from canet.models import load_model

    good = tmp_path / "good.pt"
    model = create_model("vnet", n_filters=4)
    save_checkpoint(make_checkpoint(model, "test"), good)
    with zipfile.ZipFile(good) as archive:  # the largest tensor record and where its bytes start
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        with archive.open(info) as fh:
            fh.read(1)
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(good.read_bytes())
    data[start + info.file_size // 2] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    assert torch_file_kind(bad) == "zip"
    loaded = torch.load(bad, weights_only=True)  # what read_torch_file would have returned
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in loaded["generator"].items())
    with pytest.raises(CheckpointError) as err:
        load_model(bad)
    assert str(err.value) == (f"cannot read checkpoint {bad}: a damaged file (the bytes of record "
                              f"{info.filename} do not match their CRC-32)")
    assert load_model(good) is not None
    # saved without CRC-32s (torch.serialization.set_crc32_options(False)): every record says 0, not damage
    torch.serialization.set_crc32_options(False)
    try:
        save_checkpoint(make_checkpoint(model, "test"), tmp_path / "nocrc.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(tmp_path / "nocrc.pt") as archive:
        assert {i.CRC for i in archive.infolist()} == {0}
    assert load_model(tmp_path / "nocrc.pt") is not None


def test_zip_and_legacy_checkpoints_still_load(tmp_path: Path) -> None:
    model = create_model("vnet", n_filters=4)
    payload = make_checkpoint(model, "test")
    new, old = tmp_path / "new.pt", tmp_path / "old.pt"
    save_checkpoint(payload, new)
    torch.save(payload, old, _use_new_zipfile_serialization=False)
    assert (torch_file_kind(new), torch_file_kind(old)) == ("zip", "legacy")
    for path in (new, old):
        loaded = load_checkpoint(path)
        assert loaded["model"] == payload["model"]
        for key, value in payload["generator"].items():
            assert torch.equal(loaded["generator"][key], value)
    # A zip archive that torch.save did not write (no data.pkl) is not a checkpoint either.
    other = tmp_path / "bundle.pt"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(other)
    assert str(err.value) == f"{other} is not a PyTorch checkpoint"


def test_an_original_state_dict_is_pointed_to_import_checkpoint_also_when_wrapped(tmp_path: Path) -> None:
    """A plain original state dict got the hint; one saved as {"state_dict": {"module.block_one...": ...}}
    (how training scripts often save) was only "not a canet checkpoint"."""
    weights = {"block_one.conv.conv.0.weight": torch.zeros(1)}
    for name, payload in (("plain", weights), ("wrapped", {"state_dict": {f"module.{k}": v for k, v in weights.items()}}),
                          ("model", {"model": weights, "epoch": 3})):
        path = tmp_path / f"{name}.pth"
        torch.save(payload, path)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert str(err.value) == (f"{path} is not a canet checkpoint (it looks like an original CA-Net state dict: "
                                  "run `canet import-checkpoint` first)")
    torch.save({"state_dict": {"encoder.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other.pth is not a canet checkpoint$"):
        load_checkpoint(tmp_path / "other.pth")
