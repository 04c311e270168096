"""Selecting best_val.pt on the test split is allowed but never silent.

The run warns at its start, best_val.pt records the split it was picked on, and
`canet evaluate` of that checkpoint on that split says so in summary.json, on
stderr and in the HTML report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from canet.checkpoint import load_checkpoint
from canet.cli.main import main
from canet.evaluation import checkpoint_selection, evaluate
from canet.training.trainer import Trainer, selection_warning

WARNING = (
    "warning: validation.split is 'test': best_val.pt is selected on the test cases, so its "
    "test scores are optimistic (canet evaluate marks them); select on a validation split, "
    "or report last.pt"
)


def test_selection_warning_only_for_validation_on_test(make_config) -> None:
    assert selection_warning(make_config("vnet", validation__every=1, validation__split="test")) == WARNING
    assert selection_warning(make_config("vnet", validation__every=0, validation__split="test")) is None
    assert selection_warning(make_config("vnet", validation__every=1, validation__split="labeled")) is None


def test_checkpoint_selection_record() -> None:
    best = {"selected_on": "test", "config": {"data": {"root": "/data/LA"}}}
    assert checkpoint_selection(best, "test") == {
        "selected_on": "test", "selected_on_data": "/data/LA", "selected_on_scored_split": True,
    }
    assert checkpoint_selection(best, "validation")["selected_on_scored_split"] is False
    last = {"selected_on": None, "validation_split": "test", "config": {"data": {"root": "/data/LA"}}}
    assert checkpoint_selection(last, "test") == {
        "selected_on": None, "selected_on_data": None, "selected_on_scored_split": False,
    }
    assert checkpoint_selection({}, "test")["selected_on_scored_split"] is False  # older checkpoints


@pytest.mark.slow
def test_selected_on_test_is_warned_recorded_and_reported(make_config, tmp_path: Path, capsys) -> None:
    cfg = make_config(
        "vnet", iterations=2, validation__every=1, validation__split="test", validation__max_cases=1,
    )
    lines: list[str] = []
    run = tmp_path / "run"
    Trainer(cfg, run, quiet=True, log=lines.append).run()
    assert lines.count(WARNING) == 1

    best = load_checkpoint(run / "checkpoints" / "best_val.pt")
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (best["selected_on"], best["validation_split"]) == ("test", "test")
    assert (last["selected_on"], last["validation_split"]) == (None, "test")
    with open(run / "metrics.csv", newline="") as fh:
        dice = {int(r["iteration"]): float(r["val_dice"]) for r in csv.DictReader(fh)}
    first_best = min(it for it, d in dice.items() if d == max(dice.values()))
    assert best["iteration"] == first_best and best["best_val_dice"] == pytest.approx(dice[first_best], rel=1e-5)

    # evaluate: the flag in summary.json, a warning line, the report's banner.
    warned: list[str] = []
    out = tmp_path / "eval_best"
    summary = evaluate(
        run / "checkpoints" / "best_val.pt", cfg.data.root, split="test", out_dir=out,
        report=True, progress=False, warn=warned.append,
    )
    saved = json.loads((out / "summary.json").read_text())
    for s in (summary, saved):
        assert s["selected_on"] == "test" and s["selected_on_scored_split"] is True
        assert s["selected_on_data"] == cfg.data.root
    assert warned == [
        f"{run / 'checkpoints' / 'best_val.pt'} was selected on the 'test' split it is scored on "
        "(best validation Dice during training): these scores are optimistic"
    ]
    page = (out / "report.html").read_text()
    assert "Selected on the scored split:" in page and "on the <b>test</b> split" in page

    # The last checkpoint was not picked on anything: no flag, no warning, no banner.
    warned.clear()
    out_last = tmp_path / "eval_last"
    evaluate(
        run / "checkpoints" / "last.pt", cfg.data.root, split="test", out_dir=out_last,
        report=True, progress=False, warn=warned.append,
    )
    saved = json.loads((out_last / "summary.json").read_text())
    assert saved["selected_on"] is None and saved["selected_on_scored_split"] is False
    assert not any("selected on" in w for w in warned)
    assert "Selected on the scored split" not in (out_last / "report.html").read_text()

    # Through the CLI the warning is one line on stderr.
    code = main([
        "evaluate", str(run / "checkpoints" / "best_val.pt"), "--data", cfg.data.root,
        "--split", "test", "--out", str(tmp_path / "eval_cli"), "--quiet",
    ])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert f"warning: {run / 'checkpoints' / 'best_val.pt'} was selected on the 'test' split" in err


def test_selection_on_another_split_is_recorded_without_a_warning(make_config, tmp_path: Path) -> None:
    cfg = make_config("vnet", iterations=1, validation__every=1, validation__split="labeled", validation__max_cases=1)
    lines: list[str] = []
    Trainer(cfg, tmp_path / "run", quiet=True, log=lines.append).run()
    assert not any(line.startswith("warning: validation.split") for line in lines)
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best_val.pt")
    assert (best["selected_on"], best["validation_split"]) == ("labeled", "labeled")
    summary = checkpoint_selection(best, "test")
    assert summary["selected_on"] == "labeled" and summary["selected_on_scored_split"] is False
