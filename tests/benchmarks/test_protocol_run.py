"""benchmarks/protocol_run.py: one protocol run end to end at tiny settings, the run order, weights in parts."""

from __future__ import annotations

import json
from pathlib import Path

import protocol_run as pr  # benchmarks/ is on sys.path (conftest.py)
import pytest
import torch

from canet.checkpoint import load_checkpoint
from canet.data import write_synthetic_dataset
from canet.errors import CanetError
from canet.models import load_model

TINY = ("--iterations 2 --patch-size 32 32 32 --labeled 2 --num-workers 0 --set model.n_filters=4 "
        "--set discriminator.ndf=4 --set train.checkpoint_every=1 --set train.keep_every=1")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One la_canet_8 run of two iterations, evaluated both ways."""
    tmp = tmp_path_factory.mktemp("protocol")
    data = write_synthetic_dataset(tmp / "data", n_train=6, n_test=2, seed=3, shape=(40, 40, 32))
    result = pr.run_one("la_canet_8", 5, str(data), tmp / "runs", tmp / "results", device="cpu",
                        train_args=TINY.split(), eval_args=["--sw-batch-size", "2"], kept=True)
    return result, tmp


@pytest.mark.slow
def test_run_writes_a_complete_result_file(finished) -> None:
    result, tmp = finished
    assert result["status"] == "done", result.get("error")
    saved = json.loads((tmp / "results" / "la_canet_8_seed5.json").read_text())
    assert saved == json.loads(json.dumps(result))
    # Two iterations are both warm-up steps: no steady-state time to report.
    assert saved["iterations"] == 2 and saved["sec_per_it"] is None and saved["timed_steps"] == 0
    assert saved["train_seconds"] > 0
    assert saved["progress"]["status"] == "finished" and saved["restarts"] == 0
    assert saved["cpu"]["cores"] >= 1 and "model" in saved["cpu"]
    assert len(saved["checkpoint_sha256"]) == 64
    assert saved["settings"]["profile"] == "fast" and saved["settings"]["channels_last"] is True
    assert saved["settings"]["amp"] == "none"  # bf16 only on CUDA
    assert "--fast" in saved["train_command"]
    assert saved["environment"]["torch"] == torch.__version__
    run = Path(saved["run_dir"])
    for name, mode, decision in (("reference", "reference", "probability"),
                                 ("authors_relu", "reference", "relu"), ("fast", "fast", "probability")):
        ev = saved["evaluations"][name]
        assert ev["settings"]["mode"] == mode and ev["settings"]["lcc"] is True
        assert ev["settings"]["decision"] == decision
        assert sorted(ev["cases"]) == ["synth_006", "synth_007"]
        # The means are those of the evaluation's own summary.json.
        summary = json.loads((run / f"eval_{name}" / "summary.json").read_text())
        for m in ("dice", "jaccard", "hd95", "asd"):
            assert ev["mean"][m] == pytest.approx(summary[m]["mean"])
        per_case = [c["dice"] for c in ev["cases"].values()]
        assert ev["mean"]["dice"] == pytest.approx(sum(per_case) / len(per_case))
    ref, fast = (saved["evaluations"][m]["mean"]["dice"] for m in ("reference", "fast"))
    assert saved["fast_minus_reference_dice_points"] == pytest.approx(100 * (fast - ref))
    # keep_every 1: both iterations kept and scored; the best of them is labelled optimistic.
    kept = saved["kept_checkpoints"]
    assert sorted(kept) == ["1", "2"]
    # The kept copy of the last iteration is last.pt's weights: scored once, by the reference evaluation.
    assert kept["2"]["same_as"] == "last.pt" and kept["2"]["mean"] == saved["evaluations"]["reference"]["mean"]
    assert "same_as" not in kept["1"] and not (run / "eval_kept_iter_2").exists()
    assert (run / "eval_kept_iter_1" / "summary.json").is_file()
    # An evaluated kept checkpoint carries its per-case scores, those of its own evaluation folder.
    assert kept["1"]["cases"] == json.loads(json.dumps(pr.read_evaluation(run / "eval_kept_iter_1")["cases"]))
    assert sorted(kept["1"]["cases"]) == ["synth_006", "synth_007"]
    ckpts = run / "checkpoints"
    assert pr.same_generator(ckpts / "iter_2.pt", ckpts / "last.pt")
    assert not pr.same_generator(ckpts / "iter_1.pt", ckpts / "last.pt")
    best = max(kept, key=lambda k: kept[k]["mean"]["dice"])
    assert saved["best_kept_on_test"]["iteration"] == int(best)
    assert "optimistic" in saved["best_kept_on_test"]["note"]
    # A done run is not run again: the same call returns the file as it is.
    again = pr.run_one("la_canet_8", 5, "/no/such/data", tmp / "runs", tmp / "results", device="cpu")
    assert again == saved


@pytest.mark.slow
def test_report_of_a_real_result_file(finished, capsys: pytest.CaptureFixture[str]) -> None:
    import protocol_report

    result, tmp = finished
    path = tmp / "results" / "la_canet_8_seed5.json"
    metrics = Path(result["run_dir"]) / "metrics.csv"
    assert protocol_report.main([str(path), "--metrics-csv", str(metrics), "--every", "1"]) == 0
    out = capsys.readouterr().out
    ref = result["evaluations"]["reference"]
    assert f"| 2 | {100 * ref['mean']['dice']:.2f} ± " in out  # the result file's own mean, both cases
    assert "| Zhao et al. (2023), as published | 20 | 88.14 |" in out
    assert "| 1-1 |" in out and "| 2-2 |" in out  # one loss window per iteration
    for case in ("synth_006", "synth_007"):
        assert f"| {case} | " in out


@pytest.mark.slow
def test_weights_in_parts_round_trip(finished, tmp_path: Path) -> None:
    result, _ = finished
    run = Path(result["run_dir"])
    parts = pr.export_weights(run, tmp_path / "w", part_mib=2.0)
    assert len(parts) > 1 and all(p.stat().st_size <= 2 * 2**20 for p in parts)
    joined = pr.join_weights(list(reversed(parts)), tmp_path / "model.pt")
    light = load_checkpoint(joined)
    assert not set(pr.TRAINING_STATE) & set(light)
    full = load_checkpoint(run / "checkpoints" / "last.pt")
    for k, v in full["generator"].items():
        got = light["generator"][k]
        if v.is_floating_point() and v.numel() >= pr.BF16_MIN_ELEMENTS:
            assert got.dtype == torch.bfloat16 and torch.equal(got, v.to(torch.bfloat16))
        else:
            assert torch.equal(got, v)
    model = load_model(joined)  # loads as an ordinary canet checkpoint
    assert next(model.parameters()).dtype == torch.float32
    parts[0].write_bytes(parts[0].read_bytes()[:-1])
    with pytest.raises(CanetError, match="do not match"):
        pr.join_weights(parts, tmp_path / "bad.pt")


@pytest.mark.slow
def test_interim_evaluation_keeps_the_newest_checkpoint_s_metrics_and_losses(
    finished, capsys: pytest.CaptureFixture[str]
) -> None:
    from protocol_report import read_metrics

    result, tmp = finished
    run = Path(result["run_dir"])
    kw = dict(device="cpu", eval_args=["--sw-batch-size", "2"])
    (entry,) = pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results",
                                      modes=("fast",), **kw)
    # last.pt of the finished run: iteration 2, the same file the result file hashed, and the same
    # weights and mode as the result's fast evaluation, so the same numbers.
    assert entry["iteration"] == 2 and entry["mode"] == "fast"
    assert entry["checkpoint_sha256"] == result["checkpoint_sha256"]
    for m in ("dice", "jaccard", "hd95", "asd"):
        assert entry["mean"][m] == pytest.approx(result["evaluations"]["fast"]["mean"][m])
    assert not list((run / "interim").glob("*.pt*"))  # the snapshot is removed after its evaluation
    saved = json.loads(pr.interim_path(tmp / "results", "la_canet_8", 5).read_text())
    assert "not the protocol's result" in saved["note"]
    assert list(saved["attempts"]) == [result["started"]]
    attempt = saved["attempts"][result["started"]]
    assert [e["iteration"] for e in attempt["evaluations"]] == [2]
    # One loss window (iterations 1-2, fewer than 100): the mean of metrics.csv's rows, worked out here.
    rows = read_metrics(run / "metrics.csv")
    (window,) = attempt["losses"]["windows"]
    assert window["iterations"] == [1, 2]
    assert window["loss"] == pytest.approx(sum(r["loss"] for r in rows) / len(rows))
    # The same iteration and mode again replaces its entry (its finished evaluation folder is reused).
    (again,) = pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results",
                                      modes=("fast",), **kw)
    assert again["wall_seconds"] is None and again["mean"] == entry["mean"]
    saved = json.loads(pr.interim_path(tmp / "results", "la_canet_8", 5).read_text())
    assert len(saved["attempts"][result["started"]]["evaluations"]) == 1
    # The other two evaluations of the result file, by their names there, in one call on one snapshot:
    # the same numbers and settings, in the order asked for (a repeated name counts once).
    others = pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results",
                                    modes=("authors_relu", "reference", "authors_relu"), **kw)
    assert [e["mode"] for e in others] == ["authors_relu", "reference"]
    assert {e["checkpoint_sha256"] for e in others} == {result["checkpoint_sha256"]}
    assert not list((run / "interim").glob("*.pt*"))
    for other, (name, decision) in zip(others[::-1], (("reference", "probability"), ("authors_relu", "relu"))):
        assert other["mode"] == name and other["settings"]["mode"] == "reference"
        assert other["settings"]["decision"] == decision
        for m in ("dice", "jaccard", "hd95", "asd"):
            assert other["mean"][m] == pytest.approx(result["evaluations"][name]["mean"][m])
    saved = json.loads(pr.interim_path(tmp / "results", "la_canet_8", 5).read_text())
    modes = [e["mode"] for e in saved["attempts"][result["started"]]["evaluations"]]
    assert sorted(modes) == ["authors_relu", "fast", "reference"]
    # protocol_report prints the interim file: the entry's Dice, the fast-minus-reference gap (the result
    # file's own figure for the same checkpoint) and the loss window.
    import protocol_report

    assert protocol_report.main([str(pr.interim_path(tmp / "results", "la_canet_8", 5))]) == 0
    out = capsys.readouterr().out
    assert f"| {result['started']} | " in out and f" | 2 | fast | {100 * entry['mean']['dice']:.2f} | " in out
    assert f"| 2 | fast - reference | {result['fast_minus_reference_dice_points']:+.2f} " in out
    assert "| 2 | authors_relu - reference | " in out
    assert f"| 1-2 | {window['loss']:.4g} | " in out
    # An evaluation name the result file does not know: refused in one line, before anything is evaluated.
    with pytest.raises(ValueError, match="unknown evaluation 'sloppy'"):
        pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results",
                               modes=("sloppy",), **kw)
    with pytest.raises(ValueError, match="unknown evaluation 'sloppy'"):
        pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results",
                               modes=("fast", "sloppy"), **kw)
    with pytest.raises(ValueError, match="no evaluation named"):
        pr.interim_evaluations("la_canet_8", 5, str(tmp / "data"), tmp / "runs", tmp / "results", modes=(), **kw)
    # The command line: --mode repeated evaluates the same checkpoint in each way, a line each
    # (the finished folders above are reused).
    code = pr.main(["interim", "la_canet_8", "--seed", "5", "--mode", "fast", "--mode", "reference",
                    "--runs-dir", str(tmp / "runs"), "--results", str(tmp / "results"), "--data", str(tmp / "data"),
                    "--device", "cpu", "--eval-args", "--sw-batch-size 2"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("la_canet_8 seed 5: iteration 2, fast mode, Dice ")
    assert lines[1].startswith("la_canet_8 seed 5: iteration 2, reference mode, Dice ")
    # An evaluation that fails (no data there): one line, exit status 1, no checkpoint copy left behind.
    # (Its finished folder from above would be reused without reading the data: removed first.)
    import shutil

    shutil.rmtree(run / "interim" / "eval_iter_2_reference")
    code = pr.main(["interim", "la_canet_8", "--seed", "5", "--mode", "reference", "--runs-dir", str(tmp / "runs"),
                    "--results", str(tmp / "results"), "--data", str(tmp / "no_such_data"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert not list((run / "interim").glob("*.pt*"))
    # A run folder without a checkpoint: one line and exit status 1.
    code = pr.main(["interim", "la_canet_8", "--seed", "6", "--runs-dir", str(tmp / "runs"),
                    "--results", str(tmp / "results"), "--data", str(tmp / "data")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and "no checkpoint" in err and err.count("\n") == 1


def test_failed_run_is_reported(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_train=3, n_test=1, seed=1, shape=(32, 32, 32))
    result = pr.run_one("no_such_config", 1, str(data), tmp_path / "runs", tmp_path / "results", device="cpu")
    saved = json.loads((tmp_path / "results" / "no_such_config_seed1.json").read_text())
    assert saved["status"] == result["status"] == "failed"
    assert "no_such_config" in saved["error"]
    assert not pr.is_finished(tmp_path / "results" / "no_such_config_seed1.json")


def test_order_and_pending(tmp_path: Path) -> None:
    assert pr.ORDER[:6] == tuple((c, 1337) for c in (
        "la_canet_16", "la_vnet_16", "la_canet_8", "la_vnet_8", "la_sassnet_16", "la_vnet_full"))
    assert pr.ORDER[6] == ("la_canet_16", 1338) and len(pr.ORDER) == 18
    (tmp_path / "la_canet_16_seed1337.json").write_text(json.dumps({"status": "done"}))
    (tmp_path / "la_vnet_16_seed1337.json").write_text(json.dumps({"status": "failed"}))
    (tmp_path / "la_canet_8_seed1337.json").write_text(json.dumps({"status": "running"}))
    (tmp_path / "la_vnet_8_seed1337.json").write_text(json.dumps({"status": "finished"}))  # older files
    assert pr.pending_runs(tmp_path)[:3] == [("la_vnet_16", 1337), ("la_canet_8", 1337), ("la_sassnet_16", 1337)]


def test_train_seconds_sums_rows(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("iteration,loss,sec_per_it\n10,1,0.5\n20,1,0.25\n25,1,1.0\n")
    assert pr.train_seconds(csv_path) == (pytest.approx(10 * 0.5 + 10 * 0.25 + 5 * 1.0), 25)


def test_median_speed_is_that_of_most_windows_and_slow_stretches_leave_it_alone(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    # Five windows at 10-11 s, two slowed to 40 s by something else on the CPU, one without a value.
    csv_path.write_text("iteration,loss,sec_per_it\n10,1,10.0\n20,1,40.0\n30,1,11.0\n40,1,\n"
                        "50,1,10.5\n60,1,40.0\n70,1,10.0\n80,1,11.0\n")
    # sorted: 10, 10, 10.5, 11, 11, 40, 40: the 4th of 7 is 11
    assert pr.median_sec_per_it(csv_path) == (11.0, 7)
    assert pr.train_seconds(csv_path)[0] / 70 > 18  # the mean, for contrast, is pulled up by the 40 s windows
    empty = tmp_path / "empty.csv"
    empty.write_text("iteration,loss,sec_per_it\n")
    assert pr.median_sec_per_it(empty) == (None, 0)


def test_result_file_follows_the_run_with_its_median_speed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("iteration,loss,sec_per_it\n10,1,12.0\n20,1,9.0\n30,1,30.0\n")
    progress = {"iteration": 30, "total": 6000, "sec_per_it": 17.0, "projected_total_hours": 28.3,
                "expected_end": "x", "restarts": 0, "redone_iterations": 0}
    (run_dir / "progress.json").write_text(json.dumps(progress))
    result = pr.ResultFile(tmp_path / "r.json", {"status": "running"})
    result.update_progress(run_dir)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["sec_per_it"] == 17.0 and saved["projected_hours"] == 28.3  # the clock's mean, as before
    assert saved["sec_per_it_median"] == 12.0 and saved["sec_per_it_median_rows"] == 3
    assert saved["projected_hours_median"] == pytest.approx(6000 * 12.0 / 3600)


def test_side_by_side_runs_are_told_how_many_share_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from canet.training.profiles import RUNS_ON_HOST_ENV, processes_on_host

    started: list[tuple[list[str], dict]] = []

    class FakePopen:
        def __init__(self, cmd: list[str], env: dict) -> None:
            started.append((cmd, env))

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(pr.subprocess, "Popen", FakePopen)
    base = ["python", "protocol_run.py", "run", "--data", "d"]
    assert pr._run_side_by_side(base, [("la_canet_16", 1337), ("la_vnet_16", 1337)]) == 0
    assert [cmd[3:5] for cmd, _ in started] == [["la_canet_16", "--seed"], ["la_vnet_16", "--seed"]]
    assert all(env[RUNS_ON_HOST_ENV] == "2" for _, env in started)
    monkeypatch.setenv(RUNS_ON_HOST_ENV, started[0][1][RUNS_ON_HOST_ENV])
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert processes_on_host() == 2


def test_a_result_file_whose_run_folder_is_gone_starts_over_and_records_the_lost_run(tmp_path: Path) -> None:
    # A result file left by a run on another machine: 282 iterations, its folder not here.
    results = tmp_path / "results"
    results.mkdir()
    old = {"config": "no_such_config", "seed": 1, "status": "running", "started": "2026-01-01T00:00:00+00:00",
           "updated": "2026-01-01T03:00:00+00:00", "run_dir": "/elsewhere/seed1", "cpu": {"model": "Old CPU"},
           "invocations": 3, "iteration": 282, "sec_per_it": 15.4, "sec_per_it_median": 11.2,
           "train_command": "old command",
           "wall_seconds_train": 9999.0}
    (results / "no_such_config_seed1.json").write_text(json.dumps(old))
    data = write_synthetic_dataset(tmp_path / "data", n_train=3, n_test=1, seed=1, shape=(32, 32, 32))
    pr.run_one("no_such_config", 1, str(data), tmp_path / "runs", results, device="cpu")
    saved = json.loads((results / "no_such_config_seed1.json").read_text())
    # Nothing of the lost run is counted as this one's ...
    assert saved["invocations"] == 1 and saved["started"] != old["started"]
    assert "wall_seconds_train" not in saved and saved.get("train_command") != "old command"
    # ... but the restart is on record with what it had reached.
    (lost,) = saved["lost_runs"]
    assert lost["iteration_reached"] == 282 and lost["cpu"] == "Old CPU" and lost["started"] == old["started"]
    assert lost["run_dir"] == "/elsewhere/seed1" and lost["train_command"] == "old command"
    assert (lost["sec_per_it"], lost["sec_per_it_median"]) == (15.4, 11.2)


class _Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs, not even ``except Exception``."""


def test_killed_invocations_count_their_training_wall_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two invocations killed after 100 and 50 seconds of training: the result file says 150, not 0."""
    clock = {"t": 1000.0}
    monkeypatch.setattr(pr.time, "perf_counter", lambda: clock["t"])
    run_dir = tmp_path / "runs" / "la_canet_8" / "seed1"

    def killed_after(seconds: float, iteration: int):
        def fake_run(cmd, log, poll=None, poll_seconds=15.0):
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text("iterations: 6000\n")  # as `canet train` leaves it
            clock["t"] += seconds
            progress = {"iteration": iteration, "total": 6000, "sec_per_it": 10.0, "projected_total_hours": 16.7,
                        "expected_end": "x", "restarts": 0, "redone_iterations": 0}
            (run_dir / "progress.json").write_text(json.dumps(progress))
            poll()  # the result file is rewritten as the run's progress changes
            raise _Killed
        return fake_run

    results = tmp_path / "results"
    for seconds, iteration, total in ((100.0, 10, 100.0), (50.0, 15, 150.0)):
        monkeypatch.setattr(pr, "_run", killed_after(seconds, iteration))
        with pytest.raises(_Killed):
            pr.run_one("la_canet_8", 1, "/no/data", tmp_path / "runs", results, device="cpu", exact=True)
        saved = json.loads((results / "la_canet_8_seed1.json").read_text())
        assert saved["iteration"] == iteration and saved["status"] == "running"
        assert saved["wall_seconds_train"] == pytest.approx(total)


def test_a_result_file_whose_run_folder_exists_carries_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "la_canet_8" / "seed1"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    previous = {"started": "2026-01-01T00:00:00+00:00", "iteration": 282, "invocations": 3}
    assert pr._forget_lost_run(previous, run_dir) is previous
    # A result file that never got to train has nothing lost to record.
    never = {"started": "2026-01-01T00:00:00+00:00", "iteration": None, "invocations": 2, "status": "failed"}
    assert pr._forget_lost_run(never, tmp_path / "absent") is never
    # Lost runs accumulate.
    first = pr._forget_lost_run(previous, tmp_path / "absent")
    again = pr._forget_lost_run({**first, "started": "2026-02-01T00:00:00+00:00", "iteration": 10},
                                tmp_path / "absent")
    assert [r["iteration_reached"] for r in again["lost_runs"]] == [282, 10]


def test_disk_shortfall_counts_the_kept_checkpoints_still_to_come(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At iteration 3349 of 6000 with keep_every 1000: iter_4000, 5000, 6000 and a new last.pt = 4 x its size."""
    import canet.io as canet_io

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"\0" * 1000)
    (run / "config.yaml").write_text("iterations: 6000\ntrain: {keep_every: 1000}\n", encoding="utf-8")
    (run / "progress.json").write_text(json.dumps({"status": "running", "iteration": 3349}), encoding="utf-8")
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 4000)
    assert pr.disk_shortfall(run) is None  # exactly enough
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 3999)
    warning = pr.disk_shortfall(run)
    assert warning is not None and warning.startswith(f"warning: {run} needs about 0.0 GB for 3 kept checkpoint(s)")
    (run / "progress.json").write_text(json.dumps({"status": "running", "iteration": 5000}), encoding="utf-8")
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 1999)  # iter_5000 is already there
    assert "for 1 kept checkpoint(s)" in (pr.disk_shortfall(run) or "")
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 2000)
    assert pr.disk_shortfall(run) is None
    (run / "checkpoints" / "last.pt").unlink()  # nothing to size from: no warning
    monkeypatch.setattr(canet_io, "free_bytes", lambda folder: 0)
    assert pr.disk_shortfall(run) is None


def _evaluated_result(**extra: object) -> dict:
    """A result file as a run leaves it after training and the last checkpoint's three evaluations."""
    evaluations = {name: {"mean": {"dice": 0.8}, "cases": {"a": {"dice": 0.8}}, "command": "canet evaluate ..."}
                   for name in pr.EVALUATIONS}
    evaluations["fast"] = {"mean": {"dice": 0.85}, "cases": {"a": {"dice": 0.85}}, "command": "canet evaluate ..."}
    return {"config": "la_canet_8", "seed": 1, "status": "running", "started": "2026-01-01T00:00:00+00:00",
            "run_dir": "/elsewhere/seed1", "cpu": {"model": "Old CPU"}, "invocations": 7, "iteration": 6000,
            "progress": {"status": "finished", "iteration": 6000}, "checkpoint_sha256": "ab" * 32,
            "evaluations": evaluations, **extra}


@pytest.mark.parametrize("kept", [True, False])
def test_a_run_evaluated_before_its_folder_was_lost_is_done_not_trained_again(tmp_path: Path, kept: bool) -> None:
    results = tmp_path / "results"
    results.mkdir()
    old = _evaluated_result(kept_checkpoints={"1000": {"mean": {"dice": 0.7}}})
    (results / "la_canet_8_seed1.json").write_text(json.dumps(old))
    # No data and no run folder: anything that tried to train would fail.
    result = pr.run_one("la_canet_8", 1, "/no/such/data", tmp_path / "runs", results, device="cpu", kept=kept)
    saved = json.loads((results / "la_canet_8_seed1.json").read_text())
    assert saved == result and saved["status"] == "done"
    assert not (tmp_path / "runs" / "la_canet_8" / "seed1").exists()
    # The protocol's result is the one the lost run wrote, untouched.
    for key in ("evaluations", "checkpoint_sha256", "started", "invocations", "cpu", "run_dir"):
        assert saved[key] == old[key]
    assert "lost_runs" not in saved  # nothing is trained again, so nothing starts over
    # The gap the killed run had no time to write is worked out from its evaluations (fast 0.85, reference 0.8).
    assert saved["fast_minus_reference_dice_points"] == pytest.approx(5.0)
    assert "not found" in saved["closed_without_run_folder"]["why"]
    if kept:
        assert saved["kept_checkpoints_lost"]["scored_before"] == ["1000"]
    else:
        assert "kept_checkpoints_lost" not in saved
    # Done now: the next call returns it as it is.
    assert pr.run_one("la_canet_8", 1, "/no/such/data", tmp_path / "runs", results, device="cpu") == saved


def test_a_lost_run_whose_kept_comparison_had_finished_names_nothing_lost() -> None:
    closed = pr._close_without_run_folder(_evaluated_result(best_kept_on_test={"iteration": 5000}), kept=True)
    assert closed["status"] == "done" and "kept_checkpoints_lost" not in closed


@pytest.mark.parametrize("change", ["no_fast", "empty_reference", "still_training", "no_sha"])
def test_a_lost_run_without_its_whole_result_is_not_closed(change: str) -> None:
    previous = _evaluated_result()
    if change == "no_fast":
        del previous["evaluations"]["fast"]
    elif change == "empty_reference":
        previous["evaluations"]["reference"] = {"mean": {"dice": None}, "cases": {}}
    elif change == "still_training":
        previous["progress"]["status"] = "running"
    else:
        del previous["checkpoint_sha256"]
    assert pr._evaluated_before_it_was_lost(_evaluated_result())
    assert not pr._evaluated_before_it_was_lost(previous)
    # Such a file starts over, its attempt kept under lost_runs.
    assert pr._forget_lost_run(previous, Path("/no/such/run"))["lost_runs"][0]["iteration_reached"] == 6000


def test_a_run_of_the_other_profile_is_neither_resumed_nor_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exact CPU run's files met by a fast invocation (a GPU window's default): refused, nothing written."""
    results, runs = tmp_path / "results", tmp_path / "runs"
    results.mkdir()
    cpu_run = {"config": "la_vnet_16", "seed": 1337, "status": "running", "profile": "exact", "iteration": 1409,
               "cpu": {"model": "AMD EPYC"}, "started": "2026-12-04T09:50:24+00:00"}
    path = results / "la_vnet_16_seed1337.json"
    path.write_text(json.dumps(cpu_run))
    code = pr.main(["run", "la_vnet_16", "--seed", "1337", "--data", str(tmp_path / "absent"),
                    "--runs-dir", str(runs), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: la_vnet_16 seed 1337: its result file is of a run in the exact profile (running, iteration "
                          "1409 on AMD EPYC), not a fast one; give another --results folder or add --exact")
    assert json.loads(path.read_text()) == cpu_run  # left as it was: no lost_runs, no new start
    # The same file with the profile it was made in goes on (here: its folder is gone, so it would start over).
    assert pr.profile_conflict(cpu_run, runs / "la_vnet_16" / "seed1337", exact=True) is None
    # Older files without a profile, and files of runs that never trained, are not in the way.
    assert pr.profile_conflict({k: v for k, v in cpu_run.items() if k != "profile"}, runs / "x", exact=False) is None
    assert pr.profile_conflict({**cpu_run, "iteration": None}, runs / "x", exact=False) is None
    fast = pr.profile_conflict({**cpu_run, "profile": "fast"}, runs / "x", exact=True)
    assert fast is not None and fast.endswith("or leave out --exact")

    # A run folder is resumed in the profile it was started with, so asking for the other one is refused.
    run_dir = runs / "la_vnet_16" / "seed1337"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("train: {profile: exact, amp: none}\n")
    assert pr.profile_conflict({}, run_dir, exact=True) is None
    message = pr.profile_conflict({}, run_dir, exact=False)
    assert message is not None and "started with the exact profile, not the fast one; add --exact" in message
    (run_dir / "config.yaml").write_text("train: {profile: fast, amp: bf16}\n")
    assert pr.profile_conflict({}, run_dir, exact=False) is None
    assert "leave out --exact" in str(pr.profile_conflict({}, run_dir, exact=True))


def test_join_weights_refuses_a_gap_other_files_and_odd_names(tmp_path: Path) -> None:
    for k, chunk in enumerate((b"ab", b"cd", b"ef")):
        (tmp_path / f"m.pt.part{k:03d}").write_bytes(chunk)
    # without the .sha256 beside them, a missing middle part wrote a shortened file with exit 0
    with pytest.raises(CanetError, match=r"part 001 of m.pt is missing \(1 missing\)"):
        pr.join_weights([tmp_path / "m.pt.part000", tmp_path / "m.pt.part002"], tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    (tmp_path / "n.pt.part000").write_bytes(b"x")
    with pytest.raises(CanetError, match=r"the parts belong to 2 files \(m.pt, n.pt\)"):
        pr.join_weights([tmp_path / "m.pt.part000", tmp_path / "n.pt.part000"], tmp_path / "out.pt")
    with pytest.raises(CanetError, match="is not an exported part"):
        pr.join_weights([tmp_path / "m.pt"], tmp_path / "out.pt")
    with pytest.raises(CanetError, match="is not an exported part"):
        pr.join_weights([tmp_path / "m.pt.part0\u00b2"], tmp_path / "out.pt")  # a digit int() cannot read
    with pytest.raises(CanetError, match="part 000 of m.pt is given twice"):
        pr.join_weights([tmp_path / "m.pt.part000", *sorted(tmp_path.glob("m.pt.part*"))], tmp_path / "out.pt")
    parts = sorted(tmp_path.glob("m.pt.part*"), reverse=True)
    assert pr.join_weights(parts, tmp_path / "out.pt").read_bytes() == b"abcdef"


@pytest.mark.parametrize(("argv", "why"), [
    (["next", "--count", "0"], "--count: expected a positive integer, got '0'"),
    (["next", "--count", "-17"], "--count: expected a positive integer, got '-17'"),  # started 1 run of 18
    (["run", "la_canet_16", "--seed", "-1"], "--seed: expected an integer >= 0, got '-1'"),
    (["export-weights", "r", "o", "--part-mib", "0"], "--part-mib: expected a number of MiB > 0, got '0'"),
    (["export-weights", "r", "o", "--part-mib", "-1"], "--part-mib: expected a number of MiB > 0, got '-1'"),
    (["export-weights", "r", "o", "--part-mib", "nan"], "--part-mib: expected a number of MiB > 0, got 'nan'"),
])
def test_bad_arguments_are_usage_errors(argv: list[str], why: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] in ("run", "next"):  # never the repository's results folder, whatever happens
        argv = [*argv, "--results", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exc:
        pr.main(argv)
    assert exc.value.code == 2 and why in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    cases = [
        (["run", "la_canet_16", "--train-args", "'unbalanced", "--runs-dir", str(tmp_path / "r")],
         "error: --train-args / --eval-args: No closing quotation"),
        (["run", "la_canet_16", "--runs-dir", str(tmp_path / "file")], f"error: {tmp_path / 'file'} is a file, not a folder"),
        (["next", "--results", str(tmp_path / "file")], f"error: {tmp_path / 'file'} is a file, not a folder"),
        (["export-weights", str(tmp_path / "nope"), str(tmp_path / "o")], "error: "),
        (["join-weights", str(tmp_path / "gone.pt.part000"), "-o", str(tmp_path / "j.pt")], "error: "),
    ]
    for argv, start in cases:
        if argv[0] in ("run", "next") and "--results" not in argv:  # never the repository's results folder
            argv = [*argv, "--results", str(tmp_path / "results")]
        assert pr.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "r").exists()
