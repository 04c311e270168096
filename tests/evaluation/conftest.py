"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

import pytest

from canet.cli import main as cli_main


@pytest.fixture()
def run_cli(monkeypatch, capsys):
    """Call canet's real main() with only the evaluation commands registered.

    ``run(*argv) -> (exit code, stdout, stderr)``.
    """
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("eval_cmds",))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
