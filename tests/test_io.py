"""Atomic writes: a full disk ends in one line naming the file, and the file there before is kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import canet.io as canet_io
from canet.checkpoint import save_checkpoint
from canet.errors import CanetError, DiskFullError
from canet.io import atomic_path, atomic_write_text

# What torch's zip writer raises when the disk fills up under it (seen in a CI run with a full disk).
TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 589056 vs 588952")


def _failing_save(exc: BaseException):
    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        Path(str(f)).write_bytes(b"partial")  # a writer dies half-way through
        raise exc

    return save


@pytest.mark.parametrize("free_mib", [0, 63])
def test_a_torch_writer_failing_on_a_nearly_full_disk_is_a_disk_full_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_mib: int
) -> None:
    target = tmp_path / "last.pt"
    save_checkpoint({"iteration": 1}, target)
    monkeypatch.setattr(torch, "save", _failing_save(TORCH_FULL))
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: free_mib * 2**20)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint({"iteration": 2}, target)
    message = str(info.value)
    assert message == (
        f"cannot write {target}: no space left on its disk ({free_mib} MiB free); the file there before is kept"
    )
    assert info.value.__cause__ is TORCH_FULL and isinstance(info.value, CanetError)
    assert torch.load(target, weights_only=True) == {"iteration": 1}  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no partial file left


def test_the_same_failure_with_room_on_the_disk_stays_what_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a writer is not blamed on the disk: with 64 MiB or more free the error is passed on."""
    monkeypatch.setattr(torch, "save", _failing_save(TORCH_FULL))
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 64 * 2**20)
    with pytest.raises(RuntimeError) as info:
        save_checkpoint({"iteration": 2}, tmp_path / "new.pt")
    assert info.value is TORCH_FULL
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_enospc_or_a_full_quota_is_a_disk_full_error_whatever_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 10 * 2**30)  # a quota, not the disk, is full
    target = tmp_path / "sub" / "pred.nii.gz"
    with pytest.raises(DiskFullError, match=r"^cannot write .*pred\.nii\.gz: no space left .*nothing was written$"):
        with atomic_path(target, suffix=".nii.gz") as tmp:
            tmp.write_bytes(b"x")
            raise OSError(code, "No space left on device")
    assert list(target.parent.iterdir()) == []


def test_other_errors_inside_the_block_are_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 0)
    with pytest.raises(ValueError, match="not a disk problem"):
        with atomic_path(tmp_path / "a.txt"):
            raise ValueError("not a disk problem")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.txt"):
            raise KeyboardInterrupt
    atomic_write_text(tmp_path / "a.txt", "fine")  # and writing works when nothing fails
    assert (tmp_path / "a.txt").read_text() == "fine"


def test_free_bytes_reads_the_disk_and_says_none_for_a_missing_folder(tmp_path: Path) -> None:
    free = canet_io.free_bytes(tmp_path)
    assert free is not None and free > 0
    assert canet_io.free_bytes(tmp_path / "missing") is None


DEV_FULL = Path("/dev/full")  # Linux: every write to it fails with ENOSPC
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs Linux's /dev/full")


@needs_dev_full
def test_a_metrics_csv_on_a_full_disk_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import canet.training.run_log as run_log
    from canet.training.run_log import MetricsCSV

    opened = []

    def recording_open(*args, **kwargs):
        fh = open(*args, **kwargs)  # noqa: SIM115 - checked below
        opened.append(fh)
        return fh

    monkeypatch.setattr(run_log, "open", recording_open, raising=False)
    with pytest.raises(DiskFullError, match=r"^cannot write /dev/full: no space left on its disk$") as info:
        MetricsCSV(DEV_FULL, ["loss"], start=0)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert len(opened) == 1 and opened[0].closed  # the failed header does not leave the file open


@needs_dev_full
def test_the_cli_ends_any_other_full_disk_write_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    import canet.cli.main as cli

    def write_to(path: Path) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("a line\n")

    def parser_with(func) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="canet")
        parser.set_defaults(func=func)
        return parser

    monkeypatch.setattr(cli, "build_parser", lambda: parser_with(lambda args: write_to(DEV_FULL)))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: cannot write: No space left on device\n"

    def not_a_disk_problem(args: argparse.Namespace) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere")

    monkeypatch.setattr(cli, "build_parser", lambda: parser_with(not_a_disk_problem))
    assert cli.main([]) == 2  # a path the user gave that cannot be used is not a full disk, but one line too
    assert capsys.readouterr().err == "error: cannot use /somewhere: Permission denied\n"


def test_an_output_path_blocked_by_a_file_or_a_folder_is_one_line(tmp_path: Path) -> None:
    """A folder under the file's name, or a file where a folder should be: OutputPathError, nothing written."""
    from canet.errors import OutputPathError
    from canet.io import make_folder

    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("kept")
    cases = {
        tmp_path / "a_folder": f"cannot write {tmp_path / 'a_folder'}: a folder of that name is there",
        tmp_path / "a_file" / "x.json": f"cannot write {tmp_path / 'a_file' / 'x.json'}: "
        f"{tmp_path / 'a_file'} is a file, not a folder",
        tmp_path / "a_file" / "sub" / "x.json": f"cannot write {tmp_path / 'a_file' / 'sub' / 'x.json'}: "
        f"{tmp_path / 'a_file'} is a file, not a folder",
    }
    for target, message in cases.items():
        with pytest.raises(OutputPathError) as info:
            atomic_write_text(target, "new")
        assert str(info.value) == message and isinstance(info.value, CanetError)
    assert (tmp_path / "a_file").read_text() == "kept" and list((tmp_path / "a_folder").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]  # no temporary file left

    with pytest.raises(OutputPathError, match="^cannot create the folder .*a_file: a file of that name is there$"):
        make_folder(tmp_path / "a_file")
    with pytest.raises(OutputPathError, match=r"a_file/run: .*a_file is a file, not a folder$"):
        make_folder(tmp_path / "a_file" / "run")
    assert make_folder(tmp_path / "a_folder" / "new" / "deeper").is_dir()
    assert make_folder(tmp_path / "a_folder").is_dir()  # already there: fine


def test_a_file_reaches_the_disk_before_it_replaces_the_old_one(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # renaming an unsynced file can leave an empty last.pt after a power loss, the old one gone
    cio = canet_io
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append(("replace", Path(str(src)).stat().st_size))
        real_replace(src, dst)

    monkeypatch.setattr(cio.os, "fsync", fsync)
    monkeypatch.setattr(cio.os, "replace", replace)
    (tmp_path / "a.txt").write_text("old")
    with cio.atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new text")
    assert events == [("fsync", 8), ("replace", 8)]
    events.clear()
    with cio.atomic_open(tmp_path / "b.txt") as fh:
        fh.write("12345")
    assert events == [("fsync", 5), ("replace", 5)]  # once, with the whole file
    assert (tmp_path / "a.txt").read_text() == "new text" and (tmp_path / "b.txt").read_text() == "12345"
