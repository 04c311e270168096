"""benchmarks/aggregate_results.py on hand-made run folders: seed table and paired comparison."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import aggregate_results  # benchmarks/ is on sys.path (conftest.py)
import numpy as np
import pytest

CASES = ["c1", "c2", "c3", "c4"]


def _run(out: Path, cfg: str, seed: int, dice: list[float], seconds: float) -> None:
    ev = out / cfg / f"seed{seed}" / "eval"
    ev.mkdir(parents=True)
    lines = ["case,dice,jaccard,hd95,asd,seconds"]
    lines += [f"{c},{d!r},{d / (2 - d)!r},{10 * (1 - d)!r},1.0,nan" for c, d in zip(CASES, dice)]
    (ev / "metrics.csv").write_text("\n".join(lines) + "\n")
    (ev / "summary.json").write_text(json.dumps({"cases": len(CASES), "spacing": "voxels", "mode": "reference"}))
    (ev.parent / "train_seconds.txt").write_text(f"{seconds}\n")


def test_seed_table_and_paired_comparison(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    runs = {
        "la_canet_8": {1: [0.80, 0.70, 0.90, 0.60], 2: [0.84, 0.72, 0.88, 0.64]},
        "la_vnet_8": {1: [0.78, 0.69, 0.85, 0.61], 2: [0.70, 0.65, 0.86, 0.55]},
    }
    for cfg, seeds in runs.items():
        for seed, dice in seeds.items():
            _run(tmp_path, cfg, seed, dice, 3600.0 * seed)
    (tmp_path / "la_canet_16" / "seed1").mkdir(parents=True)  # started, not evaluated yet
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", str(tmp_path), "--resamples", "500"])
    aggregate_results.main()
    text = capsys.readouterr().out

    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[1:-1]]
            for r in text.split("\n\n")[0].splitlines() if r.startswith("| la_")}
    assert list(rows) == ["la_canet_8", "la_vnet_8"]
    for cfg, seeds in runs.items():
        seed_means = [100 * statistics.fmean(d) for d in seeds.values()]
        expected = f"{statistics.fmean(seed_means):.2f} ± {statistics.stdev(seed_means):.2f}"
        assert rows[cfg][1] == "2" and rows[cfg][2] == expected
        assert rows[cfg][6] == "1.50"  # hours: mean of 1 h and 2 h
    assert rows["la_canet_8"][7] == "88.14"
    assert "la_canet_16: no evaluated seed yet, left out" in text

    per_case = {cfg: np.mean(list(seeds.values()), axis=0) for cfg, seeds in runs.items()}
    diff = 100 * (per_case["la_vnet_8"] - per_case["la_canet_8"]).mean()
    assert "| la_canet_8 | la_vnet_8 | dice % | 4 | " in text and f"| {diff:+.2f} | [" in text
    data = json.loads((tmp_path / "compare.json").read_text())
    st = data["pairs"][0]["metrics"]["dice"]
    assert st["mean_difference"] == pytest.approx(diff / 100, abs=1e-12)
    assert st["better"] == 0 and st["worse"] == 4
    assert st["seed_std_reference"] == pytest.approx(
        statistics.stdev([statistics.fmean(d) for d in runs["la_canet_8"].values()]))


def _result_file(folder: Path, cfg: str, seed: int, ref: list[float], fast: list[float], spi: float,
                 status: str = "finished") -> None:
    def ev(dice: list[float]) -> dict:
        cases = {c: {"dice": d, "jaccard": d / (2 - d), "hd95": 10 * (1 - d), "asd": None}
                 for c, d in zip(CASES, dice)}
        return {"mean": {"dice": statistics.fmean(dice)}, "cases": cases,
                "settings": {"distance_unit": "voxels", "mode": "x", "lcc": True}}

    if status == "finished":
        data = {"config": cfg, "seed": seed, "status": status, "iterations": 6000, "sec_per_it": spi,
                "train_seconds": spi * 6000, "environment": {"device_name": "NVIDIA H100 80GB HBM3"},
                "evaluations": {"reference": ev(ref), "fast": ev(fast)}}
    else:
        data = {"config": cfg, "seed": seed, "status": status, "error": "RuntimeError: out of memory"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{cfg}_seed{seed}.json").write_text(json.dumps(data))


def test_gpu_table_from_result_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results"
    _result_file(res, "la_canet_16", 1337, [0.90, 0.80, 0.70, 0.60], [0.89, 0.80, 0.70, 0.61], 0.05)
    _result_file(res, "la_canet_16", 1338, [0.92, 0.82, 0.72, 0.62], [0.92, 0.82, 0.72, 0.62], 0.07)
    _result_file(res, "la_vnet_16", 1337, [0.88, 0.78, 0.68, 0.58], [0.88, 0.78, 0.68, 0.58], 0.02)
    _result_file(res, "la_vnet_8", 1337, [], [], 0.0, status="failed")
    # An interim file beside them (protocol_run.py interim) is not a run: neither a row nor "failed".
    (res / "la_canet_8_seed1337_interim.json").write_text(json.dumps({"config": "la_canet_8", "attempts": {}}))
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", "--results", str(res), "--resamples", "200"])
    aggregate_results.main()
    out = capsys.readouterr().out
    table = out.split("\n\n")[0]  # the GPU table comes first
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in table.splitlines() if line.startswith("| la_")}
    canet = rows["la_canet_16"]
    # Seed means 75 % and 77 %: 76.00 ± 1.41 (sample std over the two seeds).
    assert canet[1] == "2" and canet[2] == f"76.00 ± {statistics.stdev([75.0, 77.0]):.2f}"
    fast_means = [statistics.fmean([89, 80, 70, 61]), 77.0]
    assert canet[6] == f"{statistics.fmean(fast_means):.2f} ± {statistics.stdev(fast_means):.2f}"
    assert canet[7] == "90.09" and canet[8] == "0.0600" and canet[9] == "6.0"
    assert canet[10] == "NVIDIA H100 80GB HBM3"
    # One seed: its mean alone, no "± 0.00" (a spread over seeds that was never measured).
    assert rows["la_vnet_16"][2] == "73.00" and rows["la_vnet_16"][7] == "-"
    assert "la_vnet_8" not in rows
    assert "- la_vnet_8 seed 1337: failed: RuntimeError: out of memory" in out
    assert "la_canet_8" not in out
    # The paired table: la_vnet_16 against the reference la_canet_16, per-case seed means.
    pair = [line for line in out.splitlines() if "la_vnet_16" in line and "la_canet_16" in line]
    assert pair, out
    assert "-3.00" in pair[0]  # 73 - 76 points on every case


def test_missing_and_missed_cases_are_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A case absent from one seed's file and a structure one seed missed: both said, neither averaged away."""
    res = tmp_path / "results"
    _result_file(res, "la_vnet_16", 1, [0.80, 0.70, 0.90, 0.60], [0.80, 0.70, 0.90, 0.60], 0.02)
    _result_file(res, "la_vnet_16", 2, [0.84, 0.74, 0.90, 0.64], [0.84, 0.74, 0.90, 0.64], 0.02)
    data = json.loads((res / "la_vnet_16_seed2.json").read_text())
    for mode in ("reference", "fast"):
        del data["evaluations"][mode]["cases"]["c4"]  # seed 2 was scored on three cases
    (res / "la_vnet_16_seed2.json").write_text(json.dumps(data))
    argv = ["aggregate_results.py", "--results", str(res), "--resamples", "200"]
    monkeypatch.setattr(sys, "argv", argv)
    aggregate_results.main()
    out = capsys.readouterr().out
    row = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("| la_vnet_16 |")).split("|")]
    # Dice over c1..c3, the cases of both seeds: seed means 80.00 and 82.67
    assert row[3] == f"81.33 ± {statistics.stdev([80.0, 248 / 3]):.2f}", out
    assert "- la_vnet_16: 1 case(s) not in every seed, left out of the group: c4 (not in seed2)" in out

    # A second config whose seed 1 predicted nothing on c2: its 95HD is over the other cases,
    # and the cell says that one case was left out.
    _result_file(res, "la_canet_16", 1, [0.80, 0.70, 0.90, 0.60], [0.80, 0.70, 0.90, 0.60], 0.05)
    _result_file(res, "la_canet_16", 2, [0.80, 0.70, 0.90, 0.60], [0.80, 0.70, 0.90, 0.60], 0.05)
    data = json.loads((res / "la_canet_16_seed1.json").read_text())
    data["evaluations"]["reference"]["cases"]["c2"].update({"dice": 0.0, "jaccard": 0.0, "hd95": None})
    (res / "la_canet_16_seed1.json").write_text(json.dumps(data))
    aggregate_results.main()
    out = capsys.readouterr().out
    row = [c.strip() for c in next(line for line in out.splitlines() if line.startswith("| la_canet_16 |")).split("|")]
    # 95HD = 10 * (1 - Dice) on c1, c3, c4 in both seeds: 2, 1, 4 -> 2.33 ± 0.00
    assert row[5] == "2.33 ± 0.00 (1 NaN)", out
    assert row[6] == "- (4 NaN)"  # _result_file writes no ASD at all
    assert "la_vnet_16: 1 case(s) not in every seed" in out  # also under a paired table


def test_distance_columns_carry_the_recorded_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results"
    for seed in (1, 2):
        _result_file(res, "la_vnet_16", seed, [0.80, 0.70, 0.90, 0.60], [0.80, 0.70, 0.90, 0.60], 0.02)

    def set_unit(seed: int, unit: str) -> None:
        data = json.loads((res / f"la_vnet_16_seed{seed}.json").read_text())
        for ev in data["evaluations"].values():
            ev["settings"]["distance_unit"] = unit
        (res / f"la_vnet_16_seed{seed}.json").write_text(json.dumps(data))

    set_unit(1, "mm")
    set_unit(2, "mm")
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", "--results", str(res)])
    aggregate_results.main()
    assert "| 95HD (mm) | ASD (mm) |" in capsys.readouterr().out
    set_unit(2, "voxels")  # one seed in voxels: its mean with the other would mix units
    with pytest.raises(SystemExit) as exc:
        aggregate_results.main()
    assert str(exc.value.code) == "error: HD95/ASD are in different units across the evaluations (la_vnet_16: mm, voxels)"


def test_result_folders_of_two_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """CPU and GPU runs in two folders: compared together, with a note that they were not trained alike."""
    cpu, gpu = tmp_path / "results", tmp_path / "results" / "h200"
    _result_file(gpu, "la_vnet_16", 1337, [0.88, 0.78, 0.68, 0.58], [0.88, 0.78, 0.68, 0.58], 0.02)
    _result_file(gpu, "la_canet_16", 1337, [0.90, 0.80, 0.70, 0.60], [0.90, 0.80, 0.70, 0.60], 0.08)
    argv = ["aggregate_results.py", "--results", str(gpu), "--reference", "la_vnet_16", "--resamples", "200"]
    monkeypatch.setattr(sys, "argv", argv)
    aggregate_results.main()
    assert "Not like for like" not in capsys.readouterr().out  # both on the same GPU, same profile

    (gpu / "la_canet_16_seed1337.json").unlink()
    _result_file(cpu, "la_canet_16", 1337, [0.90, 0.80, 0.70, 0.60], [0.90, 0.80, 0.70, 0.60], 12.0)
    data = json.loads((cpu / "la_canet_16_seed1337.json").read_text())
    data["environment"] = {"device": "cpu", "device_name": None}
    data["cpu"] = {"model": "AMD EPYC"}
    data["settings"] = {"profile": "exact"}
    (cpu / "la_canet_16_seed1337.json").write_text(json.dumps(data))
    monkeypatch.setattr(sys, "argv", [*argv, "--results", str(cpu)])
    aggregate_results.main()
    out = capsys.readouterr().out
    pair = [line for line in out.splitlines() if line.startswith("| la_vnet_16 | la_canet_16 |")]
    assert pair and "+2.00" in pair[0], out  # 75 - 73 points on every case
    note = [line for line in out.splitlines() if line.startswith("Not like for like")]
    assert note and "la_canet_16: cpu (AMD EPYC), exact profile" in note[0], out
    assert "la_vnet_16: NVIDIA H100 80GB HBM3, unknown profile" in note[0]

    # The same config and seed finished in both folders: which one is meant cannot be guessed.
    _result_file(cpu, "la_vnet_16", 1337, [0.88, 0.78, 0.68, 0.58], [0.88, 0.78, 0.68, 0.58], 7.0)
    with pytest.raises(SystemExit) as exc:
        aggregate_results.main()
    message = str(exc.value.code)
    assert message.startswith("error: la_vnet_16 seed 1337 is finished in two result folders") and "\n" not in message


def test_the_same_runs_compared_across_two_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--across pairs the runs finished in both folders (same config and seed), second against first."""
    cpu, gpu = tmp_path / "results", tmp_path / "results" / "h200"
    _result_file(cpu, "la_vnet_16", 1337, [0.90, 0.80, 0.66, 0.60], [0.90, 0.80, 0.66, 0.60], 7.8)
    _result_file(cpu, "la_canet_16", 1337, [0.90, 0.80, 0.70, 0.60], [0.90, 0.80, 0.70, 0.60], 7.9)  # CPU only
    _result_file(gpu, "la_vnet_16", 1337, [0.88, 0.78, 0.68, 0.58], [0.88, 0.78, 0.68, 0.58], 0.02)
    _result_file(gpu, "la_vnet_16", 1338, [0.10, 0.10, 0.10, 0.10], [0.10, 0.10, 0.10, 0.10], 0.02)  # GPU only
    data = json.loads((cpu / "la_vnet_16_seed1337.json").read_text())
    data["environment"] = {"device": "cpu", "device_name": None}
    data["cpu"] = {"model": "AMD EPYC"}
    data["settings"] = {"profile": "exact"}
    data["checkpoint_sha256"] = "ab" * 32
    (cpu / "la_vnet_16_seed1337.json").write_text(json.dumps(data))
    argv = ["aggregate_results.py", "--across", str(cpu), str(gpu), "--resamples", "200"]
    monkeypatch.setattr(sys, "argv", argv)
    aggregate_results.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| la_vnet_16 (")]
    # One pair: the GPU seed-1337 run against the CPU one. Per case -2, -2, +2, -2 points: mean -1.00,
    # 1 better and 3 worse; la_canet_16 (CPU only) and seed 1338 (GPU only) are left out.
    assert len(rows) == 1, out
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[0] == "la_vnet_16 (cpu (AMD EPYC), exact profile)"
    assert cells[1] == "la_vnet_16 (NVIDIA H100 80GB HBM3, unknown profile)"
    assert "| 4 | " in rows[0] and "| -1.00 | [" in rows[0] and "| 1 / 3 / 0 |" in rows[0], out
    assert "la_canet_16" not in out
    # compare's notes name the scored checkpoint by its SHA-256 where the result file records it.
    assert ("- la_vnet_16 (cpu (AMD EPYC), exact profile) scored: checkpoint last.pt of la_vnet_16_seed1337.json "
            "(sha256 abababababab)") in out
    assert "- la_vnet_16 (NVIDIA H100 80GB HBM3, unknown profile) scored: no data, ground truth or checkpoint" in out
    assert out.rstrip().endswith("several seeds per side can.")

    # Trained alike (the CPU file as written by _result_file): the folders name the groups.
    _result_file(cpu, "la_vnet_16", 1337, [0.90, 0.80, 0.66, 0.60], [0.90, 0.80, 0.66, 0.60], 7.8)
    aggregate_results.main()
    out = capsys.readouterr().out
    assert f"| la_vnet_16 ({cpu}) | la_vnet_16 ({gpu}) |" in out, out

    # Nothing in common: one line, non-zero exit.
    (gpu / "la_vnet_16_seed1337.json").unlink()
    with pytest.raises(SystemExit) as exc:
        aggregate_results.main()
    message = str(exc.value.code)
    assert message == f"error: no config and seed is finished in both {cpu} and {gpu}"


@pytest.mark.parametrize(("content", "why"), [
    ([1, 2], "is not a protocol result file (a JSON list, not an object)"),
    ({"config": "c", "seed": "x", "status": "done"}, "seed 'x' is not an integer"),
    ({"config": "c", "seed": 1, "status": "done"}, "says 'done' but holds no reference evaluation with its cases"),
    ({"config": "c", "seed": 1, "status": "done", "evaluations": {"reference": {"cases": {}}},
      "train_seconds": "long"}, "train_seconds 'long' is not a number"),
])
def test_a_malformed_result_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: object,
                                             why: str) -> None:
    res = tmp_path / "results"
    res.mkdir()
    (res / "c_seed1.json").write_text(json.dumps(content))
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", "--results", str(res)])
    with pytest.raises(SystemExit) as exc:  # a traceback (TypeError, KeyError, ValueError) before
        aggregate_results.main()
    message = str(exc.value)
    assert message.startswith(f"error: {res / 'c_seed1.json'}") and message.endswith(why) and "\n" not in message


def test_bad_folders_and_arguments_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exc:
        aggregate_results.main()
    assert str(exc.value) == f"error: protocol run folder not found: {tmp_path / 'nope'}"
    _run(tmp_path / "out", "la_canet_16", 1, [0.9, 0.8, 0.7, 0.6], 100.0)
    (tmp_path / "out" / "la_canet_16" / "seed1" / "train_seconds.txt").write_text("n/a\n")
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        aggregate_results.main()
    assert "train_seconds.txt does not hold a number of seconds: 'n/a'" in str(exc.value)
    for option in ("--seed", "--resamples"):
        monkeypatch.setattr(sys, "argv", ["aggregate_results.py", str(tmp_path / "out"), option, "-1"])
        with pytest.raises(SystemExit) as exc:
            aggregate_results.main()
        assert exc.value.code == 2 and "got '-1'" in capsys.readouterr().err


def test_a_run_still_scoring_its_kept_checkpoints_counts_once_its_last_checkpoint_is_scored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results"
    _result_file(res, "la_canet_16", 1337, [0.90, 0.80, 0.70, 0.60], [0.90, 0.80, 0.70, 0.60], 0.05)
    _result_file(res, "la_vnet_16", 1337, [0.88, 0.78, 0.68, 0.58], [0.88, 0.78, 0.68, 0.58], 0.02)
    path = res / "la_vnet_16_seed1337.json"
    data = json.loads(path.read_text())
    data.update(status="running", checkpoint_sha256="ab" * 32, iteration=6000)
    data["evaluations"]["authors_relu"] = data["evaluations"]["reference"]
    path.write_text(json.dumps(data))
    monkeypatch.setattr(sys, "argv", ["aggregate_results.py", "--results", str(res), "--resamples", "200",
                                      "--reference", "la_vnet_16"])
    aggregate_results.main()
    out = capsys.readouterr().out
    assert ("- la_vnet_16 seed 1337: its last checkpoint (the result) is evaluated in every way; its kept "
            "checkpoints are still being evaluated") in out
    pair = [line for line in out.splitlines() if line.startswith("| la_vnet_16 | la_canet_16 | dice")]
    assert pair and "+2.00" in pair[0], out  # 75 - 73 points on every case
    # without every evaluation of its last checkpoint it is an unfinished run, not a row
    del data["evaluations"]["fast"]
    path.write_text(json.dumps(data))
    aggregate_results.main()
    out = capsys.readouterr().out
    assert "- la_vnet_16 seed 1337: running, iteration 6000" in out and "| la_vnet_16 | la_canet_16 |" not in out
