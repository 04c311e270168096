"""Trainer behaviour: run folder, validation, non-finite loss, atomic checkpoints, LR schedule, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from canet.checkpoint import load_checkpoint
from canet.cli.main import main
from canet.errors import ConfigError, DataError
from canet.training.config import save_config
from canet.training.methods import ema_update
from canet.training.trainer import Hook, Trainer, TrainingError, step_lr

QUIET = {"quiet": True, "log": lambda m: None}


def test_step_lr_matches_the_original_schedule() -> None:
    ms = (2500, 3800)
    assert step_lr(0, 0.01, ms, 0.1) == 0.01 and step_lr(2499, 0.01, ms, 0.1) == 0.01
    assert step_lr(2500, 0.01, ms, 0.1) == pytest.approx(0.001)
    assert step_lr(3799, 0.01, ms, 0.1) == pytest.approx(0.001)
    assert step_lr(3800, 0.01, ms, 0.1) == pytest.approx(0.0001)


def test_ema_update_formula() -> None:
    teacher, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    t0 = teacher.weight.detach().clone()
    ema_update(teacher, student, 0.99, step=0)  # alpha = min(0, 0.99) = 0: a copy
    assert torch.equal(teacher.weight, student.weight)
    with torch.no_grad():
        teacher.weight.copy_(t0)
    ema_update(teacher, student, 0.99, step=1000)  # alpha = 0.99
    assert torch.allclose(teacher.weight, 0.99 * t0 + 0.01 * student.weight)


def test_run_folder_logging_and_validation(make_config, tmp_path: Path) -> None:
    cfg = make_config(
        "canet", iterations=4, train__log_every=2, train__checkpoint_every=2, train__keep_every=2,
        validation__every=2, validation__split="labeled", validation__max_cases=1,
    )
    seen: list[tuple[int, float]] = []

    class Record(Hook):
        def on_validation(self, trainer, iteration, dice):
            seen.append((iteration, dice))

    run = tmp_path / "run"
    result = Trainer(cfg, run, hooks=[Record()], **QUIET).run()
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "environment.json", "metrics.csv", "checkpoints"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    ckpts = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"last.pt", "iter_2.pt", "iter_4.pt", "best_val.pt"} <= ckpts
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["transformer"] is True and saved["discriminator"]["se"] is True  # resolved
    env = json.loads((run / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and "git_commit" in env
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["iteration"] for r in rows] == ["2", "4"] and "loss_adv" in rows[0]
    assert [it for it, _ in seen] == [2, 4]
    # Each validation Dice is the Dice of that iteration's weights on the first labeled case,
    # recomputed here from the kept checkpoint with the validation settings written out.
    from canet.data import load_case, open_dataset
    from canet.inferers import predict_volume
    from canet.metrics import dice
    from canet.models import load_model

    case = open_dataset(cfg.data.root, labeled=cfg.data.labeled).labeled[0]
    vol = load_case(case)
    for (it, val), row in zip(seen, rows):
        model = load_model(run / "checkpoints" / f"iter_{it}.pt")
        mask, _ = predict_volume(model, vol.image, cfg.data.patch_size, mode="fast", overlap=0.5, lcc=True)
        assert val == dice(mask, vol.label), it
        assert float(row["val_dice"]) == pytest.approx(val, rel=1e-5)
    assert result.best_val_dice == max(d for _, d in seen)
    best = load_checkpoint(run / "checkpoints" / "best_val.pt")
    assert best["best_val_dice"] == result.best_val_dice
    assert load_checkpoint(run / "checkpoints" / "iter_2.pt")["iteration"] == 2
    # A second run into the same folder is refused.
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(cfg, run, **QUIET).run()


class PoisonAt(Hook):
    """Set the generator's weights to NaN before step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_start(self, trainer, iteration):
        if iteration == self.at:
            with torch.no_grad():
                for p in trainer.generator.parameters():
                    p.fill_(float("nan"))


class CtrlCAt(Hook):
    """Raise KeyboardInterrupt (what Ctrl-C does) before step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_start(self, trainer, iteration):
        if iteration == self.at:
            raise KeyboardInterrupt


def test_ctrl_c_says_where_the_run_goes_on_from(make_config, tmp_path: Path) -> None:
    from canet.training.trainer import resume

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt) as info:  # before any checkpoint
        Trainer(make_config("vnet", iterations=4, train__checkpoint_every=2), run, hooks=[CtrlCAt(1)], **QUIET).run()
    assert str(info.value) == "training stopped at iteration 1; no checkpoint was written yet"
    assert json.loads((run / "progress.json").read_text())["status"] == "interrupted"
    with pytest.raises(KeyboardInterrupt) as info:  # iterations 0-2 done, last.pt at 2
        resume(run, quiet=True, hooks=[CtrlCAt(3)])
    assert str(info.value) == (f"training stopped at iteration 3; its last checkpoint (iteration 2) is kept; "
                               f"canet train --resume {run} goes on from it")
    progress = json.loads((run / "progress.json").read_text())
    assert (progress["status"], progress["iteration"], progress["checkpoint_iteration"]) == ("interrupted", 3, 2)
    with pytest.raises(KeyboardInterrupt, match=r"^training stopped at iteration 2; its last checkpoint \(iteration 2\)"):
        resume(run, quiet=True, hooks=[CtrlCAt(2)])  # interrupted again at once: the checkpoint it resumed from
    assert resume(run, quiet=True).iteration == 4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(make_config, tmp_path: Path) -> None:
    cfg = make_config("canet", iterations=6, train__checkpoint_every=2)
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        Trainer(cfg, run, hooks=[PoisonAt(3)], **QUIET).run()
    message = str(info.value)
    assert "non-finite loss" in message and "at iteration 4" in message
    assert str(run / "checkpoints" / "last.pt") in message and "\n" not in message
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in payload["generator"].values() if v.is_floating_point())


def test_checkpoint_write_is_atomic(make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("vnet", iterations=3, train__checkpoint_every=1)
    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third checkpoint dies half-way through writing
            Path(f).write_bytes(b"partial")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        Trainer(cfg, run, **QUIET).run()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]


def test_d_step_reuse_outputs_changes_only_the_discriminator_input(make_config, tmp_path: Path) -> None:
    results = {}
    for reuse in (False, True):
        cfg = make_config("canet", iterations=1, train__d_step_reuse_outputs=reuse)
        trainer = Trainer(cfg, tmp_path / f"run{reuse}", **QUIET)
        results[reuse] = (trainer.run().logs, trainer)
    (a, ta), (b, tb) = results[False], results[True]
    assert a["loss"] == b["loss"]  # the generator step is the same
    for (k, v), w in zip(ta.generator.state_dict().items(), tb.generator.state_dict().values()):
        assert torch.equal(v, w), k
    # The discriminator saw train-mode (dropout) outputs instead of eval-mode re-predictions.
    assert a["loss_d"] != b["loss_d"]


#: How closely compiled training must follow eager training. Compiled kernels sum in
#: another order (and another on AMD than on Intel CPUs), so weights after two steps
#: differ in their last digits; what must agree is the loss and the step taken. On an
#: Intel Xeon the two steps' updates differ by a relative norm of 7.6e-4 (losses by
#: 1e-7); a learning rate 2 % off changes them by about 6e-2.
LOSS_RTOL = 1e-4
UPDATE_RTOL = 5e-3


def _train_two_steps(make_config, run: Path, compiled: bool, lr: float = 0.01) -> tuple[dict, dict]:
    """Two SASSNet iterations: ``(logs, {name: w_end - w_start})`` of the generator's trained parameters.

    (Batch-norm running statistics are left out: their first steps do not depend on the
    gradients, so they would hide a wrong update.)
    """
    # SASSNet: the same trainer paths as CA-Net (generator and D graphs), less to compile.
    # No dropout: compiled graphs draw random numbers differently from eager mode.
    cfg = make_config(
        "sassnet", iterations=2, train__compile=compiled, train__deterministic=False,
        model__dropout=0.0, discriminator__dropout=0.0, optimizer__lr=lr,
    )
    trainer = Trainer(cfg, run, **QUIET)
    trainer.setup()  # builds the networks; run() goes on from here
    before = {k: v.detach().double().clone() for k, v in trainer.generator.named_parameters() if v.requires_grad}
    logs = trainer.run().logs
    after = dict(trainer.generator.named_parameters())
    if compiled:
        assert isinstance(trainer.g_train, torch._dynamo.eval_frame.OptimizedModule)
        assert isinstance(trainer.g_eval, torch._dynamo.eval_frame.OptimizedModule)  # the D step's forward too
    else:
        assert trainer.g_eval is trainer.generator
    return logs, {k: after[k].detach().double() - w0 for k, w0 in before.items()}


def _update_mismatch(reference: dict, other: dict) -> float:
    """``|other - reference| / |reference|`` over all the updates together (Euclidean norms)."""
    diff = sum(float((other[k] - d).pow(2).sum()) for k, d in reference.items())
    size = sum(float(d.pow(2).sum()) for d in reference.values())
    return (diff / size) ** 0.5


def _losses_agree(reference: dict, other: dict) -> bool:
    return all(
        abs(float(other[k]) - float(reference[k])) <= LOSS_RTOL * abs(float(reference[k])) for k in ("loss", "loss_d")
    )


def test_compiled_training_matches_eager(make_config, tmp_path: Path) -> None:
    """``train.compile`` (the generator's graphs in both modes, the discriminator's) changes speed, not maths.

    Compared: the losses (relative 1e-4) and the update the two steps made to the
    trained weights (relative norm 5e-3), not the weights themselves: those agree only
    to the float rounding of the CPU's kernels, which differs between CPU makers. An
    eager run with a learning rate 2 % off shows the comparison fails when the maths change.
    """
    torch._dynamo.reset()
    try:
        eager_logs, eager = _train_two_steps(make_config, tmp_path / "eager", compiled=False)
        comp_logs, comp = _train_two_steps(make_config, tmp_path / "compiled", compiled=True)
    finally:
        torch._dynamo.reset()
    assert _losses_agree(eager_logs, comp_logs), (eager_logs, comp_logs)
    assert _update_mismatch(eager, comp) <= UPDATE_RTOL, _update_mismatch(eager, comp)
    assert sum(float(d.abs().sum()) for d in eager.values()) > 0  # the steps did change the weights

    # a deliberately wrong update (lr 2 % larger) is caught by the same comparison
    _, wrong = _train_two_steps(make_config, tmp_path / "wrong", compiled=False, lr=0.0102)
    assert _update_mismatch(eager, wrong) > 5 * UPDATE_RTOL
    assert _update_mismatch(eager, {k: 1.01 * d for k, d in eager.items()}) == pytest.approx(0.01, rel=1e-9)


def test_cli_train_and_errors(tiny_data: Path, make_config, tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "cfg.yaml"
    cfg = make_config("vnet", iterations=2)
    save_config(cfg, cfg_path)
    text = cfg_path.read_text().replace(f"root: {tiny_data}", "root: null")
    cfg_path.write_text(text)
    out = tmp_path / "run"
    code = main([
        "train", "--config", str(cfg_path), "--data", str(tiny_data), "--out", str(out),
        "--iterations", "2", "--patch-size", "32", "32", "32", "--seed", "3", "--device", "cpu",
        "--set", "optimizer.lr=0.02", "--quiet",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "finished 2 iterations" in printed and str(out) in printed
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 3 and saved["optimizer"]["lr"] == 0.02
    assert saved["data"]["root"] == str(tiny_data.resolve())

    def error_of(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("error: ")
        return err

    assert "give --config" in error_of(["train"])
    assert "unknown config key 'optimiser.lr'" in error_of(
        ["train", "--config", str(cfg_path), "--set", "optimiser.lr=0.1"]
    )
    assert "data.root is not set" in error_of(["train", "--config", str(cfg_path), "--out", str(tmp_path / "x")])
    assert "patch_size must be 3 positive multiples of 16, got [100, 112, 80]" in error_of(
        ["train", "--config", str(cfg_path), "--patch-size", "100", "112", "80"]
    )
    assert "cannot be combined with --resume" in error_of(["train", "--resume", str(out), "--seed", "1"])
    # 0 is a value too: --seed 0 and --labeled 0 were dropped without a word, the run kept its own
    assert "--seed cannot be combined with --resume" in error_of(["train", "--resume", str(out), "--seed", "0"])
    assert "--labeled cannot be combined" in error_of(["train", "--resume", str(out), "--labeled", "0"])
    # a key given twice, or by --set and by its option: the one that won was not said
    assert "--set train.log_every is given twice (5 and 7); keep one" in error_of(
        ["train", "--resume", str(out), "--set", "train.log_every=5", "--set", "train.log_every=7"])
    assert "--device and --set train.device=... both set train.device; give one of them" in error_of(
        ["train", "--resume", str(out), "--device", "cpu", "--set", "train.device=cpu"])
    assert "--labeled and --set data.labeled=... both set data.labeled" in error_of(
        ["train", "--config", str(cfg_path), "--labeled", "2", "--set", "data.labeled=3"])
    assert "--set seed is given twice" in error_of(
        ["train", "--config", str(cfg_path), "--set", "seed=1", "--set", "seed=2"])
    assert "config key 'optimizer.lr' cannot change when resuming a run (these can: data.check, " in error_of(
        ["train", "--resume", str(out), "--set", "optimizer.lr=0.1"])
    assert "unknown config key 'optimiser.lr'" in error_of(["train", "--resume", str(out), "--set", "optimiser.lr=1"])
    # what resume() lets change (here the checkpoint cadence of an extended run) can be --set
    assert main(["train", "--resume", str(out), "--iterations", "3", "--set", "train.checkpoint_minutes=7",
                 "--quiet"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["checkpoint_minutes"] == 7
    assert "must be >= that" in error_of(["train", "--resume", str(out), "--iterations", "1"])
    assert "not a run folder" in error_of(["train", "--resume", str(tmp_path / "nothing")])


def test_resume_before_the_first_checkpoint_starts_over(make_config, tmp_path: Path) -> None:
    from canet.training.trainer import resume

    cfg = make_config("vnet", iterations=3, train__checkpoint_every=5)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="at iteration 2; training stopped, no checkpoint was written yet"):
        Trainer(cfg, run, hooks=[PoisonAt(1)], **QUIET).run()
    assert (run / "config.yaml").is_file() and not (run / "checkpoints" / "last.pt").exists()
    result = resume(run, quiet=True)
    assert result.iteration == 3 and load_checkpoint(result.last_checkpoint)["iteration"] == 3
    with open(run / "metrics.csv", newline="") as fh:
        assert [r["iteration"] for r in csv.DictReader(fh)] == ["1", "2", "3"]


def test_resume_after_the_run_config_was_edited_is_one_line(make_config, tmp_path: Path, capsys) -> None:
    """config.yaml edited by hand (n_filters 4 -> 2): resume names what differs instead of a traceback."""
    cfg = make_config("vnet", iterations=2, train__checkpoint_every=2)
    run = tmp_path / "run"
    Trainer(cfg, run, **QUIET).run()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["n_filters"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["train", "--resume", str(run), "--iterations", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: the checkpoint's generator weights do not fit the network of the run's config "
        "(n_filters: 4 in the checkpoint, 2 now); was its config.yaml edited? (size mismatch for "
    ), err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2  # left as it was


def test_resume_on_other_cases_is_one_line(tiny_data: Path, make_config, tmp_path: Path, capsys) -> None:
    """--data may move the run's data (another machine), not swap its cases: the same count of other
    labeled cases used to continue silently on them."""
    import shutil

    cfg = make_config("vnet", iterations=2, train__checkpoint_every=2)
    run = tmp_path / "run"
    Trainer(cfg, run, **QUIET).run()
    moved = Path(shutil.copytree(tiny_data, tmp_path / "moved"))
    assert main(["train", "--resume", str(run), "--data", str(moved), "--iterations", "3", "--quiet"]) == 0
    ids = (moved / "train.list").read_text().split()
    (moved / "train.list").write_text("\n".join([ids[2], ids[1], ids[0], *ids[3:]]) + "\n")  # case 3 labeled
    assert main(["train", "--resume", str(run), "--data", str(moved), "--iterations", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: the data holds other labeled training cases than the run was trained on: 1 of its 2 "
                   f"are missing (e.g. {ids[0]!r}) and 1 are new (e.g. {ids[2]!r}); resume with the run's data\n"), err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3  # left as it was


def test_the_split_is_said_at_the_start(make_config, tmp_path: Path, capsys) -> None:
    Trainer(make_config("canet"), tmp_path / "semi", quiet=False).run()
    out = "".join(capsys.readouterr())
    # tiny_data: 6 training cases, the first 2 labeled
    assert "data: 2 labeled + 4 unlabeled training cases; validation (validation): 0 cases, unused" in out
    Trainer(make_config("vnet"), tmp_path / "sup", quiet=False).run()
    assert "data: 2 labeled + 4 unlabeled (unused by vnet) training cases" in "".join(capsys.readouterr())
    run = Trainer(make_config("vnet", validation__every=1, validation__split="test", validation__max_cases=1),
                  tmp_path / "val", quiet=False).run()
    assert run.best_val_dice is not None
    assert "validation (test): 1 of 2 cases (max_cases), every 1 iterations" in "".join(capsys.readouterr())
    Trainer(make_config("vnet"), tmp_path / "quiet", quiet=True).run()  # --quiet output as before
    assert "data: " not in "".join(capsys.readouterr())


def test_a_patch_larger_than_the_volumes_is_said(make_config, tmp_path: Path) -> None:
    lines: list[str] = []
    Trainer(make_config("vnet", data__patch_size=[48, 32, 32]), tmp_path / "big", quiet=True, log=lines.append).run()
    assert ("warning: data.patch_size [48, 32, 32] is larger than some training volumes along an axis (smallest "
            "extent per axis [32, 32, 32]); those are zero-padded to the patch, so part of every such patch is "
            "padding") in lines
    lines.clear()
    Trainer(make_config("vnet"), tmp_path / "fits", quiet=True, log=lines.append).run()  # 32^3 on 32^3 volumes
    assert not any("patch_size" in line for line in lines)


def test_a_patch_that_fits_only_unrotated_is_said(tmp_path: Path) -> None:
    """48 x 32 x 32 volumes, patch 48 x 32 x 32: it fits as stored, but the x-y rot90 swaps x and y.

    The warning compared the patch with the volumes as stored only, while about half of
    the patches (rotated by 90 or 270 degrees) were a third zero padding.
    """
    import numpy as np

    from canet.data import augment_pair, write_synthetic_dataset
    from tests.training.conftest import tiny_config

    ones = np.ones((48, 32, 32), np.float32)
    padded = [bool((augment_pair(ones, None, (48, 32, 32), np.random.default_rng(s))[0] == 0).any()) for s in range(40)]
    assert 10 < sum(padded) < 30  # what the warning is about, on the augmentation itself
    data = write_synthetic_dataset(tmp_path / "data", n_train=3, n_test=1, seed=1, shape=(48, 32, 32))
    lines: list[str] = []
    cfg = tiny_config(data, "vnet", data__patch_size=[48, 32, 32])
    Trainer(cfg, tmp_path / "run", quiet=True, log=lines.append).run()
    assert ("warning: data.patch_size [48, 32, 32] fits the training volumes as stored (smallest extent per axis "
            "[48, 32, 32]) but not once the augmentation's 90-degree rotation swaps x and y; about half of the "
            "patches of those volumes are then partly zero padding (x and y sides of at most 32 avoid it)") in lines
    lines.clear()
    Trainer(tiny_config(data, "vnet"), tmp_path / "square", quiet=True, log=lines.append).run()  # 32^3
    assert not any("patch_size" in line for line in lines)


def test_validation_cases_without_labels_are_refused_at_the_start(tiny_data: Path, make_config, tmp_path: Path) -> None:
    """A validation case without a label passed the checks and stopped the run at its first validation.

    By then the work since the last checkpoint was lost; now the run does not start.
    """
    from canet.data import LA_CASES_DIR, LA_FILE_NAME

    ids = (tiny_data / "train.list").read_text().split()
    h5 = [str(tiny_data / LA_CASES_DIR / i / LA_FILE_NAME) for i in ids]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({
        "normalize": False,
        "training": [{"image": f, "label": f} for f in h5[:4]],
        "validation": [{"image": h5[4], "label": h5[4], "id": "v_labeled"}, {"image": h5[5], "id": "v_bare"}],
    }))
    with pytest.raises(ConfigError, match=r"^validation.every is 2 but 1 of the 2 'validation' cases it scores has "
                                          r"no label \('v_bare'\); validation needs ground truth \(give them labels, "
                                          r"or set validation.every: 0\)$"):
        Trainer(make_config("vnet", data__root=str(path), validation__every=2), tmp_path / "run", quiet=True).run()
    assert not list((tmp_path / "run").glob("checkpoints/*.pt"))
    # only the cases it scores need a label (max_cases 1: the labeled one)
    run = Trainer(make_config("vnet", data__root=str(path), validation__every=1, validation__max_cases=1,
                              data__patch_size=[32, 32, 32]), tmp_path / "one", quiet=True).run()
    assert run.best_val_dice is not None


def test_training_starts_with_the_dataset_check(tiny_data: Path, make_config, tmp_path: Path, capsys) -> None:
    """The checks of `canet check-data` run when training starts; --skip-data-check skips them."""
    import shutil

    import h5py

    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    test_case = (data / "test.list").read_text().split()[0]
    h5 = data / "2018LA_Seg_Training Set" / test_case / "mri_norm2.h5"
    with h5py.File(h5, "r+") as fh:  # a test label with two object values: not a binary label
        label = fh["label"][()]
        label[1, 2, 3] = 3
        fh["label"][...] = label
    cfg = make_config("vnet", data__root=str(data))
    with pytest.raises(DataError, match=r"the dataset has 1 problem\(s\), training not started: .*label holds values \{1, 3\}, but the task is binary"):
        Trainer(cfg, tmp_path / "run", **QUIET).run()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()

    cfg_path = tmp_path / "cfg.yaml"
    save_config(cfg, cfg_path)
    argv = ["train", "--config", str(cfg_path), "--out", str(tmp_path / "cli"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the dataset has 1 problem(s)") and err.count("\n") == 1
    assert "--skip-data-check" in err
    # Trusted data: the check is skipped (training never reads the test labels).
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "cli2"), "--skip-data-check",
                 "--quiet"]) == 0
    assert yaml.safe_load((tmp_path / "cli2" / "config.yaml").read_text())["data"]["check"] is False
    # A training label the losses would misread is refused when the loader decodes it, check or no check.
    train_case = (data / "train.list").read_text().split()[0]
    with h5py.File(data / "2018LA_Seg_Training Set" / train_case / "mri_norm2.h5", "r+") as fh:
        label = fh["label"][()]
        label[1, 2, 3] = 3
        fh["label"][...] = label
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "cli3"), "--skip-data-check",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {data / '2018LA_Seg_Training Set' / train_case}")
    assert "label holds values {1, 3}, but the task is binary" in err, err


def _nifti_datalist(root: Path, normalize: bool, lcc: bool | None = None, object_value: int = 1) -> Path:
    import json

    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    entries = []
    for i in range(3):
        label = np.zeros((32, 32, 32), np.uint8)
        label[8:22, 9:24, 10:20] = 1
        image = (300.0 + 200.0 * label + rng.normal(0, 20, label.shape)).astype(np.float32)
        affine = np.diag([0.8, 0.8, 1.5, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(root / f"img{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label * np.uint8(object_value), affine), str(root / f"lab{i}.nii.gz"))
        entries.append({"image": f"img{i}.nii.gz", "label": f"lab{i}.nii.gz"})
    data: dict = {"normalize": normalize, "training": entries}
    if lcc is not None:
        data["postprocess"] = {"lcc": lcc}
    path = root / "dataset.json"
    path.write_text(json.dumps(data))
    return path


def test_checkpoints_record_how_the_training_data_looked(make_config, tmp_path: Path) -> None:
    datalist = _nifti_datalist(tmp_path, normalize=False)
    cfg = make_config("vnet", data__root=str(datalist), data__labeled=None)
    Trainer(cfg, tmp_path / "run", **QUIET).run()
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert payload["preprocessing"] == {
        "normalize": "none", "orientation": "RAS", "spacing": pytest.approx([0.8, 0.8, 1.5]),
        "lcc": False, "dataset": "datalist",
    }
    Trainer(make_config("vnet"), tmp_path / "la", **QUIET).run()
    la = load_checkpoint(tmp_path / "la" / "checkpoints" / "last.pt")
    assert la["preprocessing"] == {
        "normalize": "zscore", "orientation": None, "spacing": None, "lcc": True, "dataset": "la",
    }


def test_validation_lcc_follows_the_dataset(make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import canet.evaluation as evaluation

    seen: list[bool] = []
    real = evaluation.evaluate_model

    def spy(*args, **kwargs):
        seen.append(kwargs["settings"].lcc)  # validation hands evaluate_model one InferenceSettings
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_model", spy)
    datalist = _nifti_datalist(tmp_path, normalize=True)
    common = {"data__root": str(datalist), "data__labeled": None, "validation__every": 1,
              "validation__split": "labeled", "validation__max_cases": 1}
    Trainer(make_config("vnet", **common), tmp_path / "a", **QUIET).run()
    Trainer(make_config("vnet", **common, validation__lcc=True), tmp_path / "b", **QUIET).run()
    Trainer(make_config("vnet", validation__every=1, validation__split="labeled", validation__max_cases=1),
            tmp_path / "c", **QUIET).run()
    assert seen == [False, True, True]  # datalist default off, forced on, LA default on


class _RecordDice(Hook):
    """Keeps every validation Dice."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_validation(self, trainer, iteration, dice):
        self.seen.append(dice)


def test_0_255_labels_train_exactly_like_0_1(make_config, tmp_path: Path) -> None:
    """A binary label stored as 0/255 (as the LA challenge's laendo.nrrd) is the same target as 0/1.

    The same SASSNet run (Dice, signed distance maps, discriminator, validation) on two
    copies of a datalist that differ only in the labels' object value: the same losses,
    validation Dice and weights, bit for bit.
    """
    runs = {}
    for value in (1, 255):
        root = tmp_path / f"data{value}"
        root.mkdir()
        datalist = _nifti_datalist(root, normalize=True, object_value=value)
        record = _RecordDice()
        cfg = make_config("sassnet", data__root=str(datalist), data__labeled=2, iterations=2,
                          validation__every=2, validation__split="labeled", validation__max_cases=1)
        result = Trainer(cfg, tmp_path / f"run{value}", hooks=[record], **QUIET).run()
        runs[value] = (result.logs, record.seen, load_checkpoint(result.last_checkpoint)["generator"])
    (logs1, dice1, weights1), (logs255, dice255, weights255) = runs[1], runs[255]
    timing = {"sec_per_it"}
    assert {k: v for k, v in logs255.items() if k not in timing} == {k: v for k, v in logs1.items() if k not in timing}
    assert "loss_sdf" in logs1
    assert dice255 == dice1 and len(dice1) == 1 and 0.0 < dice1[0] <= 1.0
    assert all(torch.equal(weights255[k], weights1[k]) for k in weights1)


@pytest.mark.parametrize("method", ["canet", "uamt"])
def test_uint8_labels_and_labeled_row_sdms_give_the_step_the_same_batch(make_config, tmp_path: Path, method) -> None:
    """The batch as sent now (uint8 labels, SDMs of the labeled rows) against the old one (int64, zero rows)."""
    cfg = make_config(method)
    new, old = (Trainer(cfg, tmp_path / name, **QUIET) for name in ("new", "old"))
    new.setup()
    old.setup()
    batch = next(new.loader)
    lbs = cfg.data.labeled_bs
    assert batch["label"].dtype == torch.uint8
    wide = dict(batch, label=batch["label"].long())
    if method == "canet":
        assert batch["sdm"].shape[0] == lbs < batch["image"].shape[0]
        wide["sdm"] = torch.cat([batch["sdm"], torch.zeros_like(batch["sdm"][:1]).expand(
            batch["image"].shape[0] - lbs, *batch["sdm"].shape[1:])])
    else:
        assert "sdm" not in batch
    seen = []
    for trainer in (new, old):
        loss = trainer.method.generator_loss

        def spy(ctx, loss=loss):
            seen.append((ctx.label.dtype, ctx.label.clone(), None if ctx.sdm is None else ctx.sdm[:lbs].clone()))
            return loss(ctx)

        trainer.method.generator_loss = spy  # type: ignore[method-assign]
    rng = torch.get_rng_state()  # both steps draw their dropout from the same global state
    logs_new = new.train_step(batch, 0)
    torch.set_rng_state(rng)
    logs_old = old.train_step(wide, 0)
    (dtype_new, label_new, sdm_new), (dtype_old, label_old, sdm_old) = seen
    assert dtype_new == dtype_old == torch.int64 and torch.equal(label_new, label_old)
    assert (sdm_new is None and sdm_old is None) or torch.equal(sdm_new, sdm_old)
    for key in logs_old:
        assert torch.equal(torch.as_tensor(logs_new[key]), torch.as_tensor(logs_old[key])), key
    for (name, a), b in zip(new.generator.state_dict().items(), old.generator.state_dict().values()):
        assert torch.equal(a, b), name
    new.loader.close()
    old.loader.close()


class _RecordLogs(Hook):
    """Keeps what on_step_end is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool, dict]] = []

    def on_step_end(self, trainer, iteration, logs, logged):
        self.seen.append((iteration, logged, dict(logs)))


def test_hooks_get_the_logged_floats_on_logged_iterations(make_config, tmp_path: Path) -> None:
    record = _RecordLogs()
    cfg = make_config("vnet", iterations=3, train__log_every=2)
    Trainer(cfg, tmp_path / "run", hooks=[record], **QUIET).run()
    assert [(i, logged) for i, logged, _ in record.seen] == [(0, False), (1, True), (2, True)]
    with open(tmp_path / "run" / "metrics.csv", newline="") as fh:
        rows = {int(r["iteration"]): r for r in csv.DictReader(fh)}
    for i, logged, logs in record.seen:
        if logged:  # the metrics.csv row itself, as floats
            assert all(type(v) is float for v in logs.values()), logs
            assert logs["loss"] == pytest.approx(float(rows[i + 1]["loss"]), rel=1e-5)
            assert "sec_per_it" in logs
        else:  # not read from the device yet
            assert isinstance(logs["loss"], torch.Tensor) and logs["loss"].ndim == 0


def test_a_refused_start_leaves_no_run_folder(make_config, tmp_path: Path) -> None:
    cfg = make_config("vnet", data__root=None)
    with pytest.raises(ConfigError, match="data.root is not set"):
        Trainer(cfg, tmp_path / "runs" / "new", **QUIET).run()
    assert not (tmp_path / "runs" / "new").exists()
    mine = tmp_path / "mine"  # a folder the user made: kept, whatever the start did
    mine.mkdir()
    with pytest.raises(ConfigError, match="data.root is not set"):
        Trainer(cfg, mine, **QUIET).run()
    assert mine.is_dir()


def test_training_into_an_evaluation_folder_is_refused(make_config, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.csv").write_text("case,dice\na,0.9\n")  # an evaluation's per-case table
    (out / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"holds the results of an evaluation .* choose another --out for the run"):
        Trainer(make_config("vnet"), out, **QUIET).run()
    assert (out / "metrics.csv").read_text() == "case,dice\na,0.9\n"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "summary.json"]
