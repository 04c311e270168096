"""README.md, docs/ARCHITECTURE.md and the code tell the same story (checked against the code, not copied)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import canet.checkpoint
from canet import errors
from canet.models import create_model
from canet.training.demo import DEMO_DATA
from canet.training.trainer import CREATED_BY, Trainer

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_bad_model_kwargs_raise_the_error_the_architecture_page_names() -> None:
    named = re.search(r"Bad kwargs raise (\w+)", ARCHITECTURE)
    assert named is not None
    with pytest.raises(errors.CanetError) as info:
        create_model("vnet", n_filtres=4)
    assert type(info.value).__name__ == named.group(1)


def test_checkpoint_docstring_names_the_trainer_as_it_writes_itself() -> None:
    doc = canet.checkpoint.__doc__ or ""
    written = re.search(r'"created_by": "([^"]+)"', doc)
    assert written is not None and written.group(1) == CREATED_BY
    assert f'make_checkpoint(generator, "{CREATED_BY}"' in ARCHITECTURE


def test_readme_make_synthetic_line_makes_the_demo_set() -> None:
    line = next(x for x in README.splitlines() if x.strip().startswith("canet make-synthetic"))
    args = shlex.split(line.split("#")[0])
    cases = int(args[args.index("--cases") + 1])
    test = int(args[args.index("--test") + 1]) if "--test" in args else 4  # the command's default
    assert (cases, test) == (DEMO_DATA["n_train"], DEMO_DATA["n_test"])
    said = re.search(r"synthetic left-atrium-like dataset \((\d+) volumes", README)
    assert said is not None and int(said.group(1)) == DEMO_DATA["n_train"] + DEMO_DATA["n_test"]


def test_run_folder_layout_is_what_canet_train_writes(make_config, tmp_path: Path) -> None:
    block = ARCHITECTURE.split("## Run folder (written by `canet train`)")[1].split("```")[1]
    listed = set()
    for line in block.strip().splitlines()[1:]:  # after "RUN_DIR/": one entry per line, then its comment
        listed.add(line.split()[0].split("/")[0].split(".out.")[0])
    run = tmp_path / "run"
    cfg = make_config("vnet", iterations=1, validation__every=1, validation__split="labeled",
                      validation__max_cases=1)
    Trainer(cfg, run, quiet=True, log=lambda m: None).run()
    written = {p.name.split(".out.")[0] if p.name.startswith("events") else p.name for p in run.iterdir()}
    assert written == {"config.yaml", "environment.json", "metrics.csv", "events", "checkpoints",
                       "progress.json", "reached", ".lock"}
    assert listed == written, (listed, written)


def test_readme_says_training_runs_the_data_check() -> None:
    assert "training runs the same checks" in README
    assert "--skip-data-check" in README
