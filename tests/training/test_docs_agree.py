"""README.md, docs/ARCHITECTURE.md, docs/METRICS.md and the code tell the same story.

Each test reads a statement from the page (the names, numbers and flags it gives)
and checks it against what the code does, not against a copy of the sentence.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import canet.checkpoint
import canet.inferers.predict as predict_module
from canet import errors
from canet.cli.main import build_parser
from canet.data import LA_CASES_DIR, LA_FILE_NAME, check_dataset
from canet.inferers import predict_volume
from canet.inferers.settings import InferenceSettings
from canet.inferers.sliding_window import sliding_window_inference
from canet.models import create_model
from canet.training.demo import DEMO_DATA
from canet.training.progress import HEARTBEAT_FILE, LOCK_FILE, PROGRESS_FILE
from canet.training.trainer import CREATED_BY, Trainer

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
ARCHITECTURE = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
METRICS = (REPO / "docs" / "METRICS.md").read_text(encoding="utf-8")


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
                       LOCK_FILE, HEARTBEAT_FILE, PROGRESS_FILE}
    assert listed == written, (listed, written)


def test_readme_data_check_sentence_is_what_training_does(make_config, tiny_data: Path, tmp_path: Path) -> None:
    """README: training runs check-data's checks at its start, stops on a problem, and a flag skips them."""
    said = re.search(
        r"training runs the same\s+checks when it\s+starts and stops on a problem \(`(--[\w-]+)` skips them", README
    )
    assert said is not None
    flag = said.group(1)
    broken = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    # A test case: a broken training label is refused by the loader as well, check or no check.
    first = (broken / "test.list").read_text().split()[0]
    with h5py.File(broken / LA_CASES_DIR / first / LA_FILE_NAME, "r+") as fh:
        label = fh["label"][()]
        label[0, 0, 0] = 3  # a third class in a binary dataset
        del fh["label"]
        fh.create_dataset("label", data=label)
    problems = check_dataset(broken).problems  # what `canet check-data` lists
    assert len(problems) == 1
    run = tmp_path / "run"
    with pytest.raises(errors.DataError) as info:
        Trainer(make_config("vnet", data__root=str(broken)), run, quiet=True, log=lambda m: None).run()
    assert problems[0] in str(info.value) and "training not started" in str(info.value) and flag in str(info.value)
    assert not (run / "checkpoints").exists()
    args = build_parser().parse_args(["train", "--config", "la_vnet_16", flag])
    assert args.skip_data_check is True  # the flag the README names is the train command's
    trusted = tmp_path / "trusted"
    Trainer(make_config("vnet", data__root=str(broken), data__check=False), trusted, quiet=True,
            log=lambda m: None).run()
    assert (trusted / "checkpoints" / "last.pt").is_file()


def test_metrics_page_says_where_the_window_sums_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/METRICS.md: the sliding-window sums stay on the network's device unless a flag keeps them on the CPU."""
    text = " ".join(METRICS.split())
    said = re.search(r"The running sums stay on the network's device .*?`(--[\w-]+)` keeps them in CPU memory", text)
    assert said is not None and "stay on the CPU" not in text
    flag = said.group(1)
    args = build_parser().parse_args(["evaluate", "m.pt", "--data", "d", "--out", "o", flag])
    assert args.sums_on_cpu is True and InferenceSettings().sums_on_cpu is False

    # where the sums are made: on the device the windows are predicted on ("meta" stands for a GPU
    # here: it holds no data, so the call stops once the sums exist) or, with the flag, on the CPU
    made: list[str] = []
    real_zeros = torch.zeros

    def zeros(*args, **kwargs):
        made.append(str(kwargs.get("device")))
        return real_zeros(*args, **kwargs)

    monkeypatch.setattr(torch, "zeros", zeros)
    image = real_zeros((1, 1, 20, 20, 10))
    for sum_device, expected in ((None, "meta"), ("cpu", "cpu")):
        made.clear()
        with pytest.raises((RuntimeError, NotImplementedError)):  # meta tensors have no values to read
            sliding_window_inference(image, lambda w: w * 0.5, (16, 16, 8), device="meta", sum_device=sum_device)
        assert made and set(made) == {expected}, (sum_device, made)

    # predict_volume hands the flag's choice on: sums where the network runs unless sums_on_cpu
    handed: list[object] = []

    def spy(*args, **kwargs):
        handed.append(kwargs["sum_device"])
        return real_zeros((1, 1, *args[0].shape[2:]))

    monkeypatch.setattr(predict_module, "sliding_window_inference", spy)
    model = create_model("vnet", n_filters=2)
    for sums_on_cpu in (False, True):
        predict_volume(model, np.zeros((16, 16, 16), np.float32), (16, 16, 16), sums_on_cpu=sums_on_cpu, device="cpu")
    assert handed == [None, "cpu"]


def test_pytest_keeps_only_failed_tests_folders_as_the_readme_says(request: pytest.FixtureRequest) -> None:
    """The training tests write GBs of checkpoints over a run; a CI run once failed with a full disk."""
    assert request.config.getini("tmp_path_retention_policy") == "failed"
    assert int(request.config.getini("tmp_path_retention_count")) <= 1
    assert "tmp_path_retention_*" in README and "keeps only the folders of failed tests" in README
