"""benchmarks/protocol_report.py: the RESULTS section of a protocol run, checked against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import protocol_report as rep  # benchmarks/ is on sys.path (conftest.py)
import pytest


def _evaluation(dice: dict[str, float], hd95: dict[str, float], seconds: float) -> dict:
    cases = {c: {"dice": d, "jaccard": d / (2 - d), "hd95": hd95[c], "asd": hd95[c] / 2} for c, d in dice.items()}
    return {"cases": cases, "mean": {}, "settings": {"distance_unit": "voxel"}, "seconds_per_volume": seconds}


def _result(gap: float) -> dict:
    return {
        "config": "la_canet_16", "seed": 1337, "status": "done", "iterations": 6000, "profile": "exact",
        "device": "cpu", "cpu": {"model": "Some CPU"}, "sec_per_it": 9.5, "sec_per_it_median": 9.25,
        "restarts": 2, "redone_iterations": 7,
        "checkpoint_sha256": "ab" * 32, "progress": {"stalled_steps": 3},
        "evaluations": {
            "reference": _evaluation({"c1": 0.8, "c2": 0.9}, {"c1": 2.0, "c2": 4.0}, 30.0),
            "authors_relu": _evaluation({"c1": 0.7, "c2": 0.9}, {"c1": 3.0, "c2": 5.0}, 31.0),
            "fast": _evaluation({"c1": 0.81, "c2": 0.9}, {"c1": 2.0, "c2": 4.0}, 3.0),
        },
        "fast_minus_reference_dice_points": gap,
        "kept_checkpoints": {"2000": {"mean": {"dice": 0.85}, "same_as": "last.pt"}, "1000": {"mean": {"dice": 0.8}}},
        "best_kept_on_test": {"iteration": 2000, "dice": 0.85},
        "lost_runs": [{"iteration_reached": 282, "cpu": "Old CPU", "why": "its run folder was not found"}],
    }


def test_summary_rows_are_mean_and_population_std_of_the_cases() -> None:
    table = rep.summary_table(_result(0.5)).splitlines()
    # reference: Dice 0.8, 0.9 -> 85 ± 5; 95HD 2, 4 -> 3 ± 1; ASD 1, 2 -> 1.5 ± 0.5
    assert table[2].startswith("| canet, reference mode")
    assert "| 2 | 85.00 ± 5.00 |" in table[2] and "| 3.00 ± 1.00 | 1.50 ± 0.50 | 30.0 |" in table[2]
    # the authors' rule: Dice 0.7, 0.9 -> 80 ± 10; Jaccard 0.7/1.3 and 0.9/1.1 (0.5385, 0.8182) -> 67.83 ± 13.99
    assert "| 80.00 ± 10.00 | 67.83 ± 13.99 |" in table[3] and "the CA-Net authors' rule" in table[3]
    assert table[-1] == "| Zhao et al. (2023), as published | 20 | 90.09 | | | | |"


def test_a_missed_case_is_counted_beside_the_distance_means() -> None:
    # c2 predicted empty: Dice 0, 95HD/ASD undefined. The distance means cover c1 alone,
    # the row's case count says 2: the cell says how many were left out.
    result = _result(0.5)
    result["evaluations"]["reference"]["cases"]["c2"].update({"dice": 0.0, "jaccard": 0.0, "hd95": None, "asd": None})
    row = rep.summary_table(result).splitlines()[2]
    assert "| 2 | 40.00 ± 40.00 |" in row
    assert "| 2.00 ± 0.00 (1 NaN) | 1.00 ± 0.00 (1 NaN) |" in row
    assert "NaN" not in rep.summary_table(_result(0.5))


@pytest.mark.parametrize(("gap", "verdict"), [(0.25, "within"), (-0.3, "within"), (0.31, "outside")])
def test_gap_is_judged_against_the_target(gap: float, verdict: str) -> None:
    assert f"{gap:+.2f} points ({verdict} the 0.3-point target)" in rep.gap_line(_result(gap))


def test_kept_checkpoints_in_iteration_order_with_the_optimistic_one_marked() -> None:
    lines = rep.kept_table(_result(0.0)).splitlines()
    assert lines[2] == "| 1000 | 80.00 |"
    assert lines[3] == "| 2000 (the last checkpoint) (best on the test set: optimistic) | 85.00 |"


def test_kept_checkpoints_with_cases_compare_the_last_one_case_by_case() -> None:
    result = _result(0.0)
    # the last checkpoint (reference): c1 0.80, c2 0.90; kept 1000: c1 0.85, c2 0.88, c3 not in the last one.
    result["kept_checkpoints"]["1000"]["cases"] = {"c1": {"dice": 0.85}, "c2": {"dice": 0.88}, "c3": {"dice": 0.5}}
    lines = rep.kept_table(result).splitlines()
    assert lines[0].endswith("| last minus kept: median per case | largest per case | cases where the last is lower |")
    assert lines[1] == "|---|---|---|---|---|"
    # last minus kept: c1 -5.00, c2 +2.00 -> median -1.50, largest -5.00 (c1), lower on 1 of 2
    assert lines[2] == "| 1000 | 80.00 | -1.50 | -5.00 (c1) | 1 of 2 |"
    assert lines[3] == "| 2000 (the last checkpoint) (best on the test set: optimistic) | 85.00 | - | - | - |"


def test_per_case_table_puts_the_worst_reference_case_first() -> None:
    lines = rep.per_case_table(_result(0.0)).splitlines()
    assert lines[0] == ("| case | Dice % reference | Dice % authors_relu | Dice % fast "
                        "| 95HD reference | 95HD authors_relu | 95HD fast |")
    assert lines[2] == "| c1 | 80.00 | 70.00 | 81.00 | 2.00 | 3.00 | 2.00 |"
    assert lines[3] == "| c2 | 90.00 | 90.00 | 90.00 | 4.00 | 5.00 | 4.00 |"


def test_loss_windows_count_a_redone_iteration_once(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    # iteration 20 was logged, the run killed, and 20 logged again after the resume (loss 4, not 2)
    csv_path.write_text("iteration,loss,loss_d,val_dice\n10,1,0.5,\n20,2,0.5,\n20,4,0.7,\n30,3,0.9,0.5\n")
    rows = rep.read_metrics(csv_path)
    assert [r["iteration"] for r in rows] == [10, 20, 30]
    lines = rep.loss_table(rows, every=20).splitlines()
    assert lines[0] == "| iterations | loss | loss_d |"
    assert lines[2] == "| 1-20 | 2.5 | 0.6 |"  # (1 + 4) / 2 and (0.5 + 0.7) / 2
    assert lines[3] == "| 21-30 | 3 | 0.9 |"


def test_report_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result(0.1)))
    assert rep.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 restart(s), 7 iteration(s) redone, 3 stalled step(s)" in out and "ab" * 32 in out
    assert "9.50 s/iteration (mean of the timed steps), 9.25 s/iteration (median" in out
    assert "reached iteration 282 on Old CPU and was lost" in out
    assert "Training losses" not in out  # no metrics.csv given

    # still scoring its kept checkpoints: the last checkpoint's evaluations are the result, said so
    running = {**_result(0.1), "status": "running"}
    path.write_text(json.dumps(running))
    assert rep.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Still running: its last checkpoint is evaluated in every way")
    assert "| canet, fast mode | 2 | 85.50 ± 4.50 |" in out
    # not yet scored in every way (or not trained to the end): refused
    running["evaluations"] = {k: v for k, v in running["evaluations"].items() if k != "fast"}
    path.write_text(json.dumps(running))
    with pytest.raises(SystemExit, match="is not a finished run \\(status 'running'\\)"):
        rep.main([str(path)])
    with pytest.raises(SystemExit, match="not found"):
        rep.main([str(tmp_path / "absent.json")])


@pytest.mark.parametrize(("content", "why"), [
    (b"[1, 2]", "is not a result file of protocol_run.py (a JSON list)"),
    (b'"text"', "is not a result file of protocol_run.py (a JSON str)"),
    (b'{"attempts": 5}', "'attempts' is not an object"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    (b'{"status": "done", "evaluations": {"fast": {"cases": {}}}}',
     "says done but lacks its reference evaluation with its cases"),
])
def test_a_file_that_is_not_a_result_is_one_line(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exc:  # tracebacks (AttributeError, UnicodeDecodeError), or an empty table
        rep.main([str(path)])
    assert str(exc.value).startswith(f"error: {path}") and why in str(exc.value)


def test_a_metrics_csv_without_losses_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_result(0.1)))
    (tmp_path / "config.yaml").write_text("iterations: 6000\n")
    (tmp_path / "other.csv").write_text("case,dice\nc1,0.5\n")
    for name in ("config.yaml", "other.csv"):  # the loss section was left out without a word
        with pytest.raises(SystemExit, match=f"{name} holds no iteration rows with losses"):
            rep.main([str(path), "--metrics-csv", str(tmp_path / name)])
    (tmp_path / "metrics.csv").write_text("iteration,loss,lr\n1,0.5,0.01\n2,0.4,0.01\n")
    assert rep.main([str(path), "--metrics-csv", str(tmp_path / "metrics.csv"), "--every", "2"]) == 0


def _entry(iteration: int, mode: str, dice: dict[str, float], mean: float) -> dict:
    return {"iteration": iteration, "mode": mode, "mean": {"dice": mean},
            "cases": {c: {"dice": d} for c, d in dice.items()}}


def test_dice_differences_worked_out_by_hand() -> None:
    ref = _entry(900, "reference", {"a": 0.80, "b": 0.90, "c": 0.70, "d": 0.60}, 0.75)
    fast = _entry(900, "fast", {"a": 0.805, "b": 0.88, "c": 0.74, "d": 0.60}, 0.75625)
    d = rep.dice_differences(fast, ref)
    # per case: +0.5, -2, +4, 0 points; sorted -2, 0, 0.5, 4: median (0 + 0.5) / 2
    assert d["mean"] == pytest.approx(0.625) and d["median"] == pytest.approx(0.25)
    assert d["largest"][0] == "c" and d["largest"][1] == pytest.approx(4.0)
    assert d["over_1"] == 2 and d["cases"] == 4
    # A case missing (or without a Dice) in one of them is left out, not counted as 0.
    partial = _entry(900, "fast", {"a": 0.9, "b": None}, 0.9)
    d = rep.dice_differences(partial, ref)
    assert d["cases"] == 1 and d["median"] == pytest.approx(10.0)
    assert rep.dice_differences(_entry(900, "fast", {}, 0.9), ref) is None


def test_interim_report_compares_the_evaluations_of_one_checkpoint(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ref = _entry(900, "reference", {"a": 0.80, "b": 0.90}, 0.85)
    content = {"config": "la_canet_16", "seed": 1337, "note": "interim", "attempts": {"T0": {
        "cpu": "Some CPU", "evaluations": [
            _entry(500, "fast", {"a": 0.5, "b": 0.6}, 0.55),  # no reference at 500: no comparison row
            _entry(900, "authors_relu", {"a": 0.78, "b": 0.90}, 0.84),
            _entry(900, "fast", {"a": 0.80, "b": 0.895}, 0.8475), ref]}}}
    path = tmp_path / "la_canet_16_seed1337_interim.json"
    path.write_text(json.dumps(content))
    assert rep.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| T0 | 900 | fast - reference | -0.25 (within the 0.3-point target) | -0.25 | -0.50 (b) | 0 of 2 |" in out
    assert "| T0 | 900 | authors_relu - reference | -1.00 | -1.00 | -2.00 (a) | 1 of 2 |" in out
    assert "| T0 | 500 |" not in out.split("evaluated in two ways")[1]


def test_merged_loss_windows_are_length_weighted_means_worked_out_by_hand() -> None:
    windows = [{"iterations": [1, 100], "loss": 0.5}, {"iterations": [101, 200], "loss": 0.3},
               {"iterations": [201, 220], "loss": 0.1, "loss_d": 0.7}]
    merged = rep.merge_windows(windows, 200)
    # 1-200: (0.5 x 100 + 0.3 x 100) / 200 = 0.4; 201-220 alone: 0.1; loss_d logged only there.
    assert [m["iterations"] for m in merged] == [[1, 200], [201, 220]]
    assert merged[0]["loss"] == pytest.approx(0.4) and merged[0]["loss_d"] is None
    assert merged[1]["loss"] == pytest.approx(0.1) and merged[1]["loss_d"] == pytest.approx(0.7)
    # One window of 220 iterations: (50 + 30 + 2) / 220, not the plain mean of the three means (0.3).
    (whole,) = rep.merge_windows(windows, 500)
    assert whole["loss"] == pytest.approx(82 / 220)


def test_report_of_a_run_closed_without_its_folder_uses_the_interim_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _result(0.5)
    del result["kept_checkpoints"], result["best_kept_on_test"]
    result["started"] = "2026-01-02T00:00:00+00:00"
    result["kept_checkpoints_lost"] = {"scored_before": [], "why": "lost with the run folder"}
    result["closed_without_run_folder"] = {"when": "2026-01-03", "cpu": "New CPU", "why": "folder not found"}
    interim = {"config": "la_canet_16", "seed": 1337, "note": "n", "attempts": {
        "2026-01-01T00:00:00+00:00": {"cpu": "Old CPU", "evaluations": [_entry(300, "fast", {"c1": 0.1}, 0.1)]},
        "2026-01-02T00:00:00+00:00": {"cpu": "Some CPU", "evaluations": [_entry(700, "fast", {"c1": 0.75}, 0.75)],
                                      "losses": {"every": 100, "windows": [
                                          {"iterations": [1, 100], "loss": 0.5},
                                          {"iterations": [101, 150], "loss": 0.2}]}},
    }}
    paths = {name: tmp_path / f"{name}.json" for name in ("result", "interim")}
    paths["result"].write_text(json.dumps(result))
    paths["interim"].write_text(json.dumps(interim))
    assert rep.main([str(paths["result"]), "--interim", str(paths["interim"]), "--every", "200"]) == 0
    out = capsys.readouterr().out
    assert "Kept checkpoints: not evaluated; lost with the run folder (scored before: none)." in out
    assert "(New CPU): folder not found." in out
    # Only the attempt this result belongs to (same start time): iteration 700, not the other attempt's 300.
    assert "| 700 | fast | 75.00 |" in out and "| 300 |" not in out
    # Its losses, joined into one window of 150 iterations: (0.5 x 100 + 0.2 x 50) / 150 = 0.4.
    assert "(to iteration 150)" in out and "| 1-150 | 0.4 |" in out
    # An interim file without this run's attempt is refused in one line.
    interim["attempts"].pop("2026-01-02T00:00:00+00:00")
    paths["interim"].write_text(json.dumps(interim))
    with pytest.raises(SystemExit, match="holds no attempt started '2026-01-02T00:00:00\\+00:00'"):
        rep.main([str(paths["result"]), "--interim", str(paths["interim"])])


def test_a_gpu_run_names_the_gpu_and_keeps_its_small_seconds() -> None:
    """A GPU run: the device is the GPU (not "auto"), and 0.0223 s/it is not rounded to 0.02."""
    result = {**_result(0.1), "device": "auto", "sec_per_it": 0.02226, "sec_per_it_median": 0.02242,
              "environment": {"device": "cuda", "device_name": "NVIDIA H200"}}
    result["evaluations"]["fast"]["seconds_per_volume"] = 0.2726
    out = rep.report(result, None)
    assert "on NVIDIA H200 (host CPU Some CPU);" in out and "on auto" not in out
    assert "steady state 0.0223 s/iteration (mean of the timed steps), 0.0224 s/iteration (median" in out
    fast_row = next(line for line in out.splitlines() if line.startswith("| canet, fast mode"))
    assert fast_row.endswith("| 0.273 |")
    assert rep.seconds(12.345) == "12.35" and rep.seconds(12.345, 1) == "12.3" and rep.seconds(None) == "-"
