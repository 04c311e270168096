"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

import pytest
import torch

from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.cli import main as cli_main
from canet.models import create_model


@pytest.fixture()
def checkpoint(tmp_path):
    """An untrained 2-filter V-Net saved as a canet checkpoint (patch 32 x 32 x 16), for predict's file handling."""
    torch.manual_seed(0)
    model = create_model("vnet", n_filters=2)
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(model, "tests", config={"patch_size": [32, 32, 16]}), path)
    return path


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
