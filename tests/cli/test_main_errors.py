"""What `canet` prints when a command fails for a reason outside canet: one line, a non-zero exit."""

from __future__ import annotations

import errno
import subprocess
import sys
from argparse import Namespace

import pytest

import canet.cli.main as cli_main


def _run_with(monkeypatch, capsys, failure: BaseException) -> tuple[int, str]:
    def boom(args: Namespace) -> int:
        raise failure

    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: Namespace(func=boom))
    code = cli_main.main([])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/ck.pt"),
         "error: cannot use /data/ck.pt: Permission denied\n"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/out/metrics.csv"),
         "error: cannot use /mnt/out/metrics.csv: Read-only file system\n"),
        (PermissionError(errno.EACCES, "Permission denied"), "error: cannot use: Permission denied\n"),
        (OSError(errno.ENOSPC, "No space left on device", "/x/last.pt"),
         "error: cannot write /x/last.pt: No space left on device\n"),
        (MemoryError("Unable to allocate 8.00 GiB for an array with shape (1024, 1024, 1024)"),
         "error: not enough memory (Unable to allocate 8.00 GiB for an array with shape (1024, 1024, 1024)); "
         "use smaller inputs or settings\n"),
    ],
)
def test_failures_outside_canet_are_one_line(monkeypatch, capsys, failure, expected) -> None:
    code, err = _run_with(monkeypatch, capsys, failure)
    assert code == 2 and err == expected


@pytest.mark.parametrize(("failure", "expected"), [
    (KeyboardInterrupt(), "error: interrupted\n"),
    (KeyboardInterrupt("training stopped at iteration 7; ..."), "error: interrupted: training stopped at iteration 7; ...\n"),
])
def test_ctrl_c_is_one_line_with_exit_130(monkeypatch, capsys, failure, expected) -> None:
    code, err = _run_with(monkeypatch, capsys, failure)
    assert code == 130 and err == expected


def test_an_unexpected_os_error_without_a_file_is_not_hidden(monkeypatch, capsys) -> None:
    with pytest.raises(OSError, match="Connection reset"):  # a bug's traceback stays visible
        _run_with(monkeypatch, capsys, OSError(errno.ECONNRESET, "Connection reset"))


def test_a_closed_pipe_ends_quietly() -> None:
    # `canet list-models | true`: the reader is gone before canet writes; no BrokenPipeError traceback
    proc = subprocess.run(
        f"{sys.executable} -c 'import sys; from canet.cli.main import main; sys.exit(main([\"list-models\"]))' | true",
        shell=True, capture_output=True, text=True, check=False,
    )
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


def test_a_tilde_means_the_home_folder_in_every_argument(monkeypatch) -> None:
    # `--out=~/runs` reaches canet unexpanded (the shell expands ~ only at the start of a word)
    monkeypatch.setenv("HOME", "/home/someone")
    seen: dict = {}

    def capture(args: Namespace) -> int:
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("eval_cmds",))
    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():  # every command calls capture
        action.set_defaults(func=capture)
    assert cli_main.main(["predict", "~/ck.pt", "~/scans", "a~b.nii.gz", "--output=~/masks"]) == 0
    assert seen["checkpoint"] == "/home/someone/ck.pt" and seen["output"] == "/home/someone/masks"
    assert seen["inputs"] == ["/home/someone/scans", "a~b.nii.gz"]  # only a leading ~


def test_a_broken_pipe_that_is_not_stdout_is_not_hidden(monkeypatch, capsys) -> None:
    with pytest.raises(BrokenPipeError):  # stdout is fine here: some other pipe broke
        _run_with(monkeypatch, capsys, BrokenPipeError(errno.EPIPE, "Broken pipe"))


def test_canet_debug_shows_the_traceback(monkeypatch, capsys) -> None:
    monkeypatch.setenv(cli_main.DEBUG_ENV, "1")
    with pytest.raises(PermissionError):
        _run_with(monkeypatch, capsys, PermissionError(errno.EACCES, "Permission denied", "/data/ck.pt"))


@pytest.mark.parametrize("argv", [
    ["score", "p", "g", "--out", ""], ["evaluate", "c.pt", "--data", "d", "--out", " "],
    ["predict", "c.pt", "x", "-o", ""], ["compare", "a", "b", "--out", ""], ["report", "f", "-o", ""],
    ["train", "--config", "demo", "--out", ""], ["demo", "--out", ""], ["make-synthetic", ""],
    ["prepare-la", "raw", ""],
])
def test_an_empty_output_path_is_refused_not_the_current_folder(argv, tmp_path, monkeypatch, capsys) -> None:
    """`score --out ''` wrote metrics.csv and summary.json into the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli_main.main(argv)
    assert info.value.code == 2
    assert "expected a path, got " in capsys.readouterr().err.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_make_synthetic_counts_are_checked_by_their_options(capsys) -> None:
    """`--cases 0` was refused as "n_train must be ...", a name the command does not have."""
    for option, value, wanted in (("--cases", "0", "a positive integer"), ("--test", "-1", "an integer >= 0"),
                                  ("--seed", "-3", "an integer >= 0")):
        with pytest.raises(SystemExit):
            cli_main.main(["make-synthetic", "out", option, value])
        assert capsys.readouterr().err == (f"canet make-synthetic: error: argument {option}: expected {wanted}, "
                                           f"got '{value}' (see canet make-synthetic --help)\n")


@pytest.mark.parametrize(("argv", "expected"), [
    (["evaluate", "ck.pt", "--data", "d", "--out", "o", "--overlap", "7"],
     "canet evaluate: error: argument --overlap: overlap must be in [0, 1), got '7' (see canet evaluate --help)\n"),
    (["evaluate", "ck.pt"],
     "canet evaluate: error: the following arguments are required: --data, --out (see canet evaluate --help)\n"),
    (["--bogus"], "canet: error: unrecognized arguments: --bogus (see canet --help)\n"),
])
def test_bad_arguments_are_one_line_not_the_usage_block(argv, expected, capsys) -> None:
    # argparse's own error() prints the whole usage block (ten lines for evaluate) first
    with pytest.raises(SystemExit) as exc:
        cli_main.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err == expected
