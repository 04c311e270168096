"""``canet compare`` (canet.comparison) on hand-made evaluation folders with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from canet.cli.main import main
from canet.comparison import compare, load_group
from canet.errors import CanetError
from canet.metrics.summary import MetricAccumulator

CASES = [f"case{i:02d}" for i in range(12)]


def write_eval(folder: Path, rows: dict[str, dict[str, float]], unit: str | None = "voxels",
               diagonal: float | None = None, **extra: object) -> Path:
    """An evaluation folder in canet evaluate's format (metrics.csv + summary.json).

    ``diagonal``: also write the ``diagonal`` column (this value for every case).
    """
    folder.mkdir(parents=True)
    lines = ["case,dice,jaccard,hd95,asd,seconds" + (",diagonal" if diagonal is not None else "")]
    for case, r in rows.items():
        cells = [repr(float(r.get(m, 0.5))) if not math.isnan(r.get(m, 0.5)) else "nan"
                 for m in ("dice", "jaccard", "hd95", "asd")]
        tail = ["nan"] if diagonal is None else ["nan", repr(float(r.get("diagonal", diagonal)))]
        lines.append(",".join([case, *cells, *tail]))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    summary = {"cases": len(rows), "spacing": unit, "mode": "reference", "std_ddof": 0, **extra}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def dice_rows(values: dict[str, float], hd95: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    return {c: {"dice": v, "jaccard": v / (2 - v), "hd95": (hd95 or {}).get(c, 4.0), "asd": 1.0}
            for c, v in values.items()}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def base_dice() -> dict[str, float]:
    rng = np.random.default_rng(0)
    return dict(zip(CASES, rng.uniform(0.6, 0.9, len(CASES)).tolist()))


def test_identical_groups_through_the_cli(tmp_path: Path, base_dice: dict[str, float],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_eval(tmp_path / "a" / "eval", dice_rows(base_dice))
    write_eval(tmp_path / "b" / "eval", dice_rows(base_dice))
    out_dir = tmp_path / "cmp"
    code, out, err = run_cli([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out_dir),
                              "--resamples", "500"], capsys)
    assert code == 0, err
    data = json.loads((out_dir / "compare.json").read_text())
    assert data["reference"] == "a" and [g["name"] for g in data["groups"]] == ["a", "b"]
    for m in ("dice", "jaccard", "hd95", "asd"):
        st = data["pairs"][0]["metrics"][m]
        assert st["mean_difference"] == 0.0
        assert st["ci_low"] <= 0.0 <= st["ci_high"]
        assert st["p_value"] == 1.0
        assert (st["better"], st["worse"], st["tied"], st["n"]) == (0, 0, 12, 12)
    md = (out_dir / "compare.md").read_text()
    assert md in out  # the same table on stdout
    assert "| a | b | dice % | 12 |" in md and "+0.00 | [+0.00, +0.00] | 1.0000 | 0 / 0 / 12 |" in md


def test_constant_shift_of_one_point(tmp_path: Path, base_dice: dict[str, float]) -> None:
    write_eval(tmp_path / "a", dice_rows(base_dice))
    write_eval(tmp_path / "b", dice_rows({c: v + 0.01 for c, v in base_dice.items()}))
    st = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice"], resamples=1000).pairs[0].metrics["dice"]
    assert st.mean_difference == pytest.approx(0.01, abs=1e-12)
    assert st.ci_low == st.ci_high == pytest.approx(0.01, abs=1e-12)
    assert (st.better, st.worse) == (12, 0)
    twice = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice", "dice"], resamples=10)
    assert twice.metrics == ["dice"]  # a metric named twice is compared once
    with pytest.raises(CanetError, match=r"metrics.csv is a file; give the evaluation folder"):
        compare([tmp_path / "a" / "metrics.csv", tmp_path / "b"])


def test_p_value_by_hand_and_direction_of_distances(tmp_path: Path) -> None:
    """Six cases, all better, no ties: the exact two-sided Wilcoxon p is 2 / 2**6 = 2/64."""
    six = [f"c{i}" for i in range(6)]
    dice_a = dict(zip(six, [0.70, 0.72, 0.75, 0.80, 0.81, 0.85]))
    gains = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]  # distinct: ranks 1..6
    dice_b = {c: dice_a[c] + g for c, g in zip(six, gains)}
    hd_a = dict.fromkeys(six, 9.0)
    hd_b = {c: 9.0 - g * 100 for c, g in zip(six, gains)}  # lower is better: b wins on every case
    write_eval(tmp_path / "a", dice_rows(dice_a, hd_a))
    write_eval(tmp_path / "b", dice_rows(dice_b, hd_b))
    pair = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice", "hd95"], resamples=200).pairs[0]
    assert pair.metrics["dice"].p_value == pytest.approx(2 / 64, abs=1e-12)
    assert pair.metrics["hd95"].p_value == pytest.approx(2 / 64, abs=1e-12)
    assert (pair.metrics["dice"].better, pair.metrics["dice"].worse) == (6, 0)
    assert (pair.metrics["hd95"].better, pair.metrics["hd95"].worse) == (6, 0)  # lower distances win
    assert pair.metrics["dice"].mean_difference == pytest.approx(0.035, abs=1e-12)
    assert pair.metrics["hd95"].mean_difference == pytest.approx(-3.5, abs=1e-12)
    # one loss, on the largest difference: W- = 6, and 14 of the 64 sign patterns have W <= 6: p = 28/64
    dice_c = dict(dice_b)
    dice_c["c5"] = dice_a["c5"] - 0.06
    write_eval(tmp_path / "c", dice_rows(dice_c, hd_b))
    st = compare([tmp_path / "a", tmp_path / "c"], metrics=["dice"], resamples=200).pairs[0].metrics["dice"]
    assert st.p_value == pytest.approx(28 / 64, abs=1e-12) and (st.better, st.worse) == (5, 1)


def test_cases_matched_by_id_and_a_missing_case_is_named(tmp_path: Path, base_dice: dict[str, float],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_eval(tmp_path / "a", dice_rows(base_dice))
    other = {c: base_dice[c] + 0.02 for c in reversed(CASES) if c != "case05"}  # other order, one missing
    write_eval(tmp_path / "b", dice_rows(other))
    code, out, _ = run_cli([str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "dice", "--resamples", "100"],
                           capsys)
    assert code == 0
    assert "b vs a: 1 case(s) only in a, left out: case05" in out
    assert "| a | b | dice % | 11 |" in out and "11 / 0 / 0 | 1 missing, 0 NaN |" in out
    pair = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice"], resamples=100).pairs[0]
    assert pair.only_in_reference == ["case05"] and pair.only_in_other == []
    assert pair.metrics["dice"].mean_difference == pytest.approx(0.02, abs=1e-12)


def test_nan_distances_are_left_out_and_counted(tmp_path: Path, base_dice: dict[str, float]) -> None:
    write_eval(tmp_path / "a", dice_rows(base_dice, {"case01": math.nan}))
    write_eval(tmp_path / "b", dice_rows(base_dice, {"case02": math.nan, "case03": 2.0}))
    comparison = compare([tmp_path / "a", tmp_path / "b"], resamples=100)
    st = comparison.pairs[0].metrics["hd95"]
    assert st.nan_in_reference == ["case01"] and st.nan_in_other == ["case02"]
    assert st.n == 10 and st.mean_difference == pytest.approx(-2.0 / 10)  # case03: 4 -> 2
    assert comparison.pairs[0].metrics["dice"].n == 12  # Dice keeps every case
    assert comparison.group_stats["a"]["hd95"]["nan"] == 1
    md = comparison.markdown()
    assert "b vs a, hd95: 1 case(s) NaN in a, left out: case01" in md
    assert "b vs a, hd95: 1 case(s) NaN in b, left out: case02" in md
    assert "| 4.00 ± 0.00 (1 NaN) |" in md
    assert "paired case(s)" not in md  # 10 and 12 cases: no small-sample note


def test_seeds_are_aggregated(tmp_path: Path) -> None:
    cases = ["c1", "c2", "c3"]
    seeds_a = {"seed1": [0.80, 0.70, 0.90], "seed2": [0.82, 0.74, 0.86], "seed3": [0.78, 0.72, 0.88]}
    seeds_b = {"seed1": [0.90, 0.80, 0.90], "seed2": [0.70, 0.60, 0.80]}
    for name, table in (("A", seeds_a), ("B", seeds_b)):
        for seed, vals in table.items():
            write_eval(tmp_path / name / seed / "eval", dice_rows(dict(zip(cases, vals))))
    (tmp_path / "A" / "notes").mkdir()  # a sub-folder without an evaluation: listed, ignored
    comparison = compare([tmp_path / "A", tmp_path / "B"], metrics=["dice"], resamples=200)
    a, b = comparison.groups
    assert (a.n_seeds, b.n_seeds) == (3, 2) and a.member_names == ["seed1", "seed2", "seed3"]
    assert a.ignored == ["notes"]
    per_case_a = np.mean(list(seeds_a.values()), axis=0)
    per_case_b = np.mean(list(seeds_b.values()), axis=0)
    assert list(a.values("dice").values()) == pytest.approx(per_case_a.tolist(), abs=1e-15)
    st_a = comparison.group_stats["A"]["dice"]
    seed_means_a = [np.mean(v) for v in seeds_a.values()]
    assert st_a["seed_means"] == pytest.approx(seed_means_a, abs=1e-15)
    assert st_a["seed_mean"] == pytest.approx(np.mean(seed_means_a), abs=1e-15)
    assert st_a["seed_std"] == pytest.approx(np.std(seed_means_a, ddof=1), abs=1e-15)
    assert st_a["mean"] == pytest.approx(per_case_a.mean()) and st_a["std"] == pytest.approx(per_case_a.std())
    pair = comparison.pairs[0]
    st = pair.metrics["dice"]
    assert st.mean_difference == pytest.approx((per_case_b - per_case_a).mean(), abs=1e-12)
    seed_std_b = np.std([np.mean(v) for v in seeds_b.values()], ddof=1)
    assert pair.seed_std_other["dice"] == pytest.approx(seed_std_b)
    assert pair.spread_ratio("dice") == pytest.approx(abs(st.mean_difference) / max(st_a["seed_std"], seed_std_b))
    md = comparison.markdown()
    assert "| A | 3 | seed1, seed2, seed3 |" in md and "notes" in md
    assert "abs(difference) / seed std" in md


def test_a_case_nan_in_one_seed_is_nan_for_the_group(tmp_path: Path) -> None:
    write_eval(tmp_path / "A" / "s1", dice_rows({"c1": 0.8, "c2": 0.7}, {"c1": math.nan}))
    write_eval(tmp_path / "A" / "s2", dice_rows({"c1": 0.8, "c2": 0.7}, {"c1": 3.0}))
    group = load_group(tmp_path / "A")
    assert math.isnan(group.values("hd95")["c1"]) and group.values("hd95")["c2"] == 4.0
    st = group.statistics("hd95")
    assert (st["n"], st["nan"], st["nan_values"]) == (1, 1, 1)


def test_an_evaluation_without_a_distance_unit_is_named(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", dice_rows({"c1": 0.8, "c2": 0.7}), unit="mm")
    write_eval(tmp_path / "b", dice_rows({"c1": 0.8, "c2": 0.6}), unit=None)  # an older file: no unit
    comparison = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice", "hd95"], resamples=50)
    assert comparison.distance_unit == "mm"
    note = [n for n in comparison.all_notes() if "record no distance unit" in n]
    assert note == [f"1 evaluation(s) record no distance unit, their HD95/ASD are taken as mm like the others': "
                    f"{tmp_path / 'b'}"]
    dice_only = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice"], resamples=50)
    assert not any("distance unit" in n for n in dice_only.all_notes())


def test_seed_means_cover_the_same_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # seed s2 missed c3 (its hardest case for s1); its mean over c1, c2 alone would be 5.5
    # against s1's 4.67 over all three, a seed std of 0.59 that is only a difference of case sets
    write_eval(tmp_path / "A" / "s1", dice_rows({"c1": 0.8, "c2": 0.7, "c3": 0.9}, {"c1": 5.0, "c2": 6.0, "c3": 3.0}))
    write_eval(tmp_path / "A" / "s2", dice_rows({"c1": 0.82, "c2": 0.72, "c3": 0.0},
                                                {"c1": 4.0, "c2": 7.0, "c3": math.nan}))
    for seed, shift in (("s1", 0.0), ("s2", 1.0)):
        write_eval(tmp_path / "B" / seed, dice_rows({"c1": 0.8, "c2": 0.7, "c3": 0.9},
                                                    {"c1": 4.0 + shift, "c2": 5.0, "c3": 3.0}))
    st = load_group(tmp_path / "A").statistics("hd95")
    assert st["seed_means"] == pytest.approx([5.5, 5.5]) and st["seed_std"] == 0.0
    assert st["seed_mean"] == pytest.approx(st["mean"])
    code, out, _ = run_cli([str(tmp_path / "A"), str(tmp_path / "B"), "--metric", "hd95", "--resamples", "50"], capsys)
    assert code == 0
    assert "| A | 2 | s1, s2 | 5.50 ± 0.00 (1 NaN case left out) |" in out
    assert "- B vs A: only 2 paired case(s); the bootstrap CI and the p-value rest on too few cases" in out


def test_a_case_missing_in_one_seed_is_named(tmp_path: Path) -> None:
    write_eval(tmp_path / "A" / "s1", dice_rows({"c1": 0.8, "c2": 0.7, "c3": 0.6}))
    write_eval(tmp_path / "A" / "s2", dice_rows({"c1": 0.8, "c2": 0.7}))
    group = load_group(tmp_path / "A")
    assert group.cases == ["c1", "c2"] and group.incomplete_cases == {"c3": ["s2"]}
    assert any("c3 (not in s2)" in n for n in group.notes)


def test_bootstrap_is_reproducible_for_a_seed(tmp_path: Path, base_dice: dict[str, float]) -> None:
    rng = np.random.default_rng(4)
    write_eval(tmp_path / "a", dice_rows(base_dice))
    write_eval(tmp_path / "b", dice_rows({c: v + rng.normal(0, 0.03) for c, v in base_dice.items()}))
    srcs = [tmp_path / "a", tmp_path / "b"]
    first = compare(srcs, metrics=["dice"], resamples=2000, seed=11, out_dir=tmp_path / "o1")
    compare(srcs, metrics=["dice"], resamples=2000, seed=11, out_dir=tmp_path / "o2")
    other = compare(srcs, metrics=["dice"], resamples=2000, seed=12).pairs[0].metrics["dice"]
    assert (tmp_path / "o1" / "compare.json").read_bytes() == (tmp_path / "o2" / "compare.json").read_bytes()
    st = first.pairs[0].metrics["dice"]
    assert (st.ci_low, st.ci_high) != (other.ci_low, other.ci_high)
    assert st.p_value == other.p_value


def test_real_evaluation_format(tmp_path: Path) -> None:
    """Folders written by the evaluation's own writer (MetricAccumulator) are read as they are."""
    gt = np.zeros((12, 12, 8), np.uint8)
    gt[3:9, 3:9, 2:6] = 1
    for name, grow in (("small", 0), ("big", 1)):
        acc = MetricAccumulator()
        for i in range(4):
            pred = np.zeros_like(gt)
            pred[3:9 + grow * (i % 2), 3:9, 2:6] = 1
            acc.add(f"case{i}", pred, gt)
        acc.add("case_empty", np.zeros_like(gt), gt)  # HD95/ASD NaN
        folder = tmp_path / name
        folder.mkdir()
        acc.write_csv(folder / "metrics.csv")
        acc.write_summary(folder / "summary.json")
    comparison = compare([tmp_path / "small", tmp_path / "big"], resamples=100)
    dice = comparison.pairs[0].metrics["dice"]
    assert dice.n == 5 and (dice.better, dice.worse, dice.tied) == (0, 2, 3)
    assert comparison.pairs[0].metrics["hd95"].nan_in_reference == ["case_empty"]
    assert comparison.distance_unit == "voxels"


def test_report_and_canet_report(tmp_path: Path, base_dice: dict[str, float],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    write_eval(tmp_path / "a", dice_rows(base_dice))
    write_eval(tmp_path / "b", dice_rows(base_dice))
    code, out, err = run_cli([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o"),
                              "--report", "--resamples", "100"], capsys)
    assert code == 0, err
    page = (tmp_path / "o" / "compare.html").read_text()
    assert "<td>dice %</td>" in page and "Paired differences" in page
    assert main(["report", str(tmp_path / "o")]) == 0
    assert "Paired differences" in (tmp_path / "o" / "report.html").read_text()


def test_seed_folders_of_different_methods_are_refused(tmp_path: Path, base_dice: dict[str, float]) -> None:
    for method in ("vnet", "canet"):
        write_eval(tmp_path / "la_lite" / method / "eval", dice_rows(base_dice))
        (tmp_path / "la_lite" / method / "config.yaml").write_text(f"method: {method}\nseed: 1\n")
    with pytest.raises(CanetError, match="different methods"):
        load_group(tmp_path / "la_lite")
    (tmp_path / "la_lite" / "canet" / "config.yaml").write_text("method: vnet\nseed: 2\ndata:\n  batch_size: 2\n")
    group = load_group(tmp_path / "la_lite")  # same method, other seed: fine, other keys noted
    assert group.n_seeds == 2 and any("data.batch_size" in n for n in group.notes)


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_ends_in_one_line(tmp_path: Path, base_dice: dict[str, float],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    a = write_eval(tmp_path / "a", dice_rows(base_dice))
    b = write_eval(tmp_path / "b", dice_rows({f"other{i}": 0.5 for i in range(3)}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "train_run").mkdir()
    (tmp_path / "train_run" / "metrics.csv").write_text("iteration,loss\n1,0.5\n")
    (tmp_path / "train_run" / "summary.json").write_text("{}")
    mm = write_eval(tmp_path / "mm", dice_rows(base_dice), unit="mm")

    assert "holds no evaluation" in _one_line_error(capsys, [str(a), str(tmp_path / "empty")])
    assert "not found" in _one_line_error(capsys, [str(a), str(tmp_path / "missing")])
    assert "no 'case' column" in _one_line_error(capsys, [str(a), str(tmp_path / "train_run")])
    err = _one_line_error(capsys, [str(a), str(b)])
    assert "share no case id" in err and "'other0'" in err
    assert "'dsc'" in _one_line_error(capsys, [str(a), str(mm), "--metric", "dsc"])
    assert "'dice_2' is not a column" in _one_line_error(capsys, [str(a), str(mm), "--metric", "dice_2"])
    assert "different units" in _one_line_error(capsys, [str(a), str(mm), "--metric", "dice", "hd95"])
    assert "'nope'" in _one_line_error(capsys, [str(a), str(mm), "--reference", "nope"])
    assert "needs --out" in _one_line_error(capsys, [str(a), str(mm), "--report"])
    assert "given twice" in _one_line_error(capsys, [str(a), str(a)])
    bad = write_eval(tmp_path / "bad", {"c1": {"dice": 0.5}})
    (bad / "metrics.csv").write_text("case,dice,jaccard,hd95,asd,seconds\nc1,oops,0,0,0,0\n")
    assert "'oops'" in _one_line_error(capsys, [str(a), str(bad)])
    with pytest.raises(SystemExit) as exc:  # numpy's traceback for a negative bootstrap seed before
        main(["compare", str(a), str(mm), "--seed", "-1"])
    assert exc.value.code == 2 and "--seed: expected an integer >= 0, got '-1'" in capsys.readouterr().err
    # a unit difference does not matter when only Dice is compared; the reference can be named
    code, out, _ = run_cli([str(a), str(mm), "--metric", "dice", "--reference", "mm", "--resamples", "50"], capsys)
    assert code == 0 and "| mm | a | dice % | 12 |" in out


def test_each_side_is_named_and_different_data_is_said(tmp_path: Path, base_dice: dict[str, float]) -> None:
    """Case ids shared by evaluations of different datasets are no pairing: compare says so."""
    write_eval(tmp_path / "a", dice_rows(base_dice), data="/data/LA", split="test", checkpoint="/runs/a/last.pt")
    write_eval(tmp_path / "b", dice_rows(base_dice), data="/data/LA", split="test", checkpoint="/runs/b/last.pt")
    write_eval(tmp_path / "c", dice_rows(base_dice), data="/data/LA_copy", split="test",
               checkpoint="/runs/b/last.pt")
    write_eval(tmp_path / "s", dice_rows(base_dice), gt="/masks/gt", mode=None)  # canet score: no windows
    notes = compare([tmp_path / "a", tmp_path / "b"], metrics=["dice"], resamples=50).all_notes()
    assert "a scored: data /data/LA; split test; checkpoint /runs/a/last.pt" in notes
    assert "b scored: data /data/LA; split test; checkpoint /runs/b/last.pt" in notes
    assert not any("differs" in n for n in notes)  # the checkpoints are what is compared, named above
    assert not any("data differs" in n for n in notes)
    notes = compare([tmp_path / "b", tmp_path / "c"], metrics=["dice"], resamples=50).all_notes()
    assert (
        'evaluation data differs: b="/data/LA", c="/data/LA_copy" (the groups scored different data: cases '
        "with the same id may be different scans)"
    ) in notes
    assert not any("checkpoint differs" in n for n in notes)
    comparison = compare([tmp_path / "a", tmp_path / "s"], metrics=["dice"], resamples=50)
    assert "s scored: gt /masks/gt" in comparison.all_notes()
    assert any(n.startswith("evaluation gt differs: a=null, s=") for n in comparison.all_notes())
    assert not any(n.startswith("evaluation mode differs") for n in comparison.all_notes())  # s ran no network
    write_eval(tmp_path / "f", dice_rows(base_dice), data="/data/LA", split="test", mode="fast")
    notes = compare([tmp_path / "a", tmp_path / "f"], metrics=["dice"], resamples=50).all_notes()
    assert 'evaluation mode differs: a="reference", f="fast"' in notes  # both recorded: said
    notes = compare([tmp_path / "s", tmp_path / "a", tmp_path / "f"], metrics=["dice"], resamples=50).all_notes()
    assert 'evaluation mode differs: a="reference", f="fast"' in notes  # s records none: left out, not all
    groups = comparison.to_dict()["groups"]
    assert groups[0]["data"] == ["/data/LA"] and groups[1]["gt"] == ["/masks/gt"] and groups[1]["data"] == []


def test_a_missed_structure_is_counted_and_can_weigh_against_the_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """b misses the structure of c3 (empty prediction: Dice 0, HD95 NaN): named, and penalised on request."""
    cases = ["c1", "c2", "c3", "c4"]
    a = {c: {"dice": 0.8, "jaccard": 0.8 / 1.2, "hd95": 5.0, "asd": 1.0} for c in cases}
    b = {c: {"dice": 0.85, "jaccard": 0.85 / 1.15, "hd95": 4.0, "asd": 0.8} for c in cases}
    b["c3"] = {"dice": 0.0, "jaccard": 0.0, "hd95": math.nan, "asd": math.nan}
    write_eval(tmp_path / "a", a, diagonal=100.0)
    write_eval(tmp_path / "b", b, diagonal=100.0)
    srcs = [tmp_path / "a", tmp_path / "b"]

    plain = compare(srcs, resamples=200)
    st = plain.pairs[0].metrics["hd95"]
    assert st.n == 3 and st.nan_in_other == ["c3"] and st.mean_difference == -1.0  # b looks better
    assert plain.pairs[0].missed_other["hd95"] == ["c3"] and plain.pairs[0].missed_reference["hd95"] == []
    assert plain.group_stats["b"]["hd95"]["missed"] == 1
    md = plain.markdown()
    assert "| 0 / 0 / 0 |" not in md and "0 missing, 1 NaN (1 missed structure) |" in md
    assert (
        "b vs a, hd95: 1 missed structure(s) in b (one mask empty: Dice 0, hd95 NaN) dropped from the paired "
        "test, which favours the method that missed: c3; --distance-penalty diagonal counts them"
    ) in md

    fixed = compare(srcs, resamples=200, distance_penalty=50.0)
    st = fixed.pairs[0].metrics["hd95"]
    assert st.n == 4 and st.nan_in_other == []
    assert st.mean_difference == pytest.approx((-1.0 * 3 + (50.0 - 5.0)) / 4)  # the miss now weighs against b
    assert (st.better, st.worse) == (3, 1)
    assert fixed.group_stats["b"]["hd95"]["mean"] == pytest.approx((4.0 * 3 + 50.0) / 4)
    assert "b vs a, hd95: 1 missed structure(s) in b counted at 50: c3" in fixed.all_notes()
    assert "0 missing, 0 NaN; 1 missed, counted at the penalty |" in fixed.markdown()
    # the groups' means hold the penalty too: their table says so (it did not, also with one group)
    assert "Groups: mean ± std over cases; a missed structure's HD95/ASD counted at 50" in fixed.markdown()
    assert "counted at" not in plain.markdown().split("\n\n")[0]
    assert "counted at 50" in compare(srcs[1:], resamples=200, distance_penalty=50.0).markdown()

    # c5 holds no structure: a predicts one there (missed the other way: Dice 0, hd95 NaN), b predicts
    # nothing (Dice 1, hd95 NaN: nothing to measure). b's NaN leaves c5 out of the pair, so a's penalty
    # is not used there and the table counts one missed case (c3), not two.
    a["c5"] = {"dice": 0.0, "jaccard": 0.0, "hd95": math.nan, "asd": math.nan}
    b["c5"] = {"dice": 1.0, "jaccard": 1.0, "hd95": math.nan, "asd": math.nan}
    write_eval(tmp_path / "a5", a, diagonal=100.0)
    write_eval(tmp_path / "b5", b, diagonal=100.0)
    five = compare([tmp_path / "a5", tmp_path / "b5"], resamples=200, distance_penalty=50.0)
    st = five.pairs[0].metrics["hd95"]
    assert st.n == 4 and st.nan_in_other == ["c5"]
    assert "0 missing, 1 NaN; 1 missed, counted at the penalty |" in five.markdown()

    code, out, err = run_cli([*map(str, srcs), "--distance-penalty", "diagonal", "--metric", "asd",
                              "--resamples", "200", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert data["distance_penalty"] == "diagonal"
    st = data["pairs"][0]["metrics"]["asd"]
    assert st["n"] == 4 and st["mean_difference"] == pytest.approx((-0.2 * 3 + (100.0 - 1.0)) / 4)
    assert "counted at the volume's diagonal: c3" in out

    write_eval(tmp_path / "old_b", b)  # b's metrics.csv as written before the diagonal column
    err = _one_line_error(capsys, [str(tmp_path / "a"), str(tmp_path / "old_b"), "--distance-penalty", "diagonal"])
    assert "has no 'diagonal' column" in err and "give --distance-penalty a number" in err
    code, _, err = run_cli([str(tmp_path / "a"), str(tmp_path / "b"), "--distance-penalty", "-3"], capsys)
    assert code == 2 and "distance penalty must be 'diagonal' or a positive number, got '-3'" in err


def _write_multiclass(folder: Path, per_class: dict[str, list[tuple[float, float]]], diagonal: float) -> Path:
    """A 3-class evaluation: ``per_class[case]`` = [(dice, hd95) of class 1, of class 2]; the mean columns
    are the means over the classes with a finite value, as canet writes them."""
    folder.mkdir(parents=True)
    head = ["case", "dice", "jaccard", "hd95", "asd"]
    for k in (1, 2):
        head += [f"dice_{k}", f"jaccard_{k}", f"hd95_{k}", f"asd_{k}"]
    lines = [",".join([*head, "seconds", "diagonal"])]
    for case, classes in per_class.items():
        def mean(values: list[float]) -> float:
            finite = [v for v in values if not math.isnan(v)]
            return sum(finite) / len(finite) if finite else math.nan

        dice, hd = [d for d, _ in classes], [h for _, h in classes]
        cells = [mean(dice), mean(dice), mean(hd), mean(hd)]
        for d, h in classes:
            cells += [d, d, h, h]
        lines.append(",".join([case, *("nan" if math.isnan(v) else repr(v) for v in cells), "nan", repr(diagonal)]))
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps({"cases": len(per_class), "spacing": "voxels", "num_classes": 3}))
    return folder


def test_a_class_missed_in_a_multiclass_mean_is_a_miss(tmp_path: Path) -> None:
    """b loses class 1 of c3 entirely: its mean HD95 over the classes found (9) would make it look better."""
    cases = ["c1", "c2", "c3", "c4"]
    a = {c: [(0.8, 6.0), (0.8, 10.0)] for c in cases}  # mean HD95 8 everywhere
    b = {c: [(0.85, 5.0), (0.85, 9.0)] for c in cases}  # mean HD95 7 ...
    b["c3"] = [(0.0, math.nan), (0.85, 9.0)]  # ... but class 1 missed in c3: the mean column says 9
    srcs = [_write_multiclass(tmp_path / "a", a, 100.0), _write_multiclass(tmp_path / "b", b, 100.0)]

    plain = compare(srcs, resamples=200)
    st = plain.pairs[0].metrics["hd95"]
    # Left out and named as a missed structure, not scored as a 1-point loss on c3.
    assert st.n == 3 and st.nan_in_other == ["c3"] and st.mean_difference == pytest.approx(-1.0)
    assert plain.pairs[0].missed_other["hd95"] == ["c3"]
    # With a penalty, the missed class counts at it inside the class mean: (50 + 9) / 2 against 8.
    fixed = compare(srcs, resamples=200, distance_penalty=50.0)
    st = fixed.pairs[0].metrics["hd95"]
    assert st.n == 4 and st.mean_difference == pytest.approx((-1.0 * 3 + ((50.0 + 9.0) / 2 - 8.0)) / 4)
    diag = compare(srcs, resamples=200, distance_penalty="diagonal").pairs[0].metrics["hd95"]
    assert diag.mean_difference == pytest.approx((-1.0 * 3 + ((100.0 + 9.0) / 2 - 8.0)) / 4)
    # Dice needs nothing of this: the missed class's 0 is in the mean already.
    assert plain.pairs[0].metrics["dice"].n == 4


def test_other_decision_amp_or_normalisation_is_noted_between_groups_and_seeds(tmp_path: Path) -> None:
    """The authors' ReLU rule scored against canet's probability rule (or bf16 against fp32, raw
    against z-scored images) moved Dice with no note, as a mode or lcc difference does not."""
    rows = dice_rows(dict.fromkeys(CASES, 0.9))
    base = {"decision": "probability", "amp": "none", "normalize": "zscore"}
    write_eval(tmp_path / "ours", rows, **base)
    write_eval(tmp_path / "theirs", rows, **{**base, "decision": "relu", "amp": "bf16", "normalize": "none"})
    for seed, decision in (("s1", "probability"), ("s2", "relu")):
        write_eval(tmp_path / "seeds" / seed, rows, **{**base, "decision": decision})
    notes = compare([tmp_path / "ours", tmp_path / "theirs", tmp_path / "seeds"], metrics=["dice"],
                    resamples=50).all_notes()
    for key, values in (("decision", '"probability", theirs="relu", seeds="probability"'),
                        ("amp", '"none", theirs="bf16", seeds="none"'),
                        ("normalize", '"zscore", theirs="none", seeds="zscore"')):
        assert f"evaluation {key} differs: ours={values}" in notes, notes
    assert 'seeds: its seeds were evaluated with different decision ("probability", "relu")' in notes


def test_group_notes_name_the_group_as_the_tables_do(tmp_path: Path) -> None:
    """Two groups named m (x/m, y/m) are shown by their paths; y/m's own notes still said "m:"."""
    rows = dice_rows(dict.fromkeys(CASES, 0.8))
    write_eval(tmp_path / "x" / "m", rows)
    write_eval(tmp_path / "y" / "m" / "s1", rows, mode="fast", checkpoint_iteration=6000)
    write_eval(tmp_path / "y" / "m" / "s2", dice_rows(dict.fromkeys(CASES[:-1], 0.8)), checkpoint_iteration=319)
    c = compare([tmp_path / "x" / "m", tmp_path / "y" / "m"], metrics=["dice"], resamples=50)
    name = str(tmp_path / "y" / "m")
    assert [g.name for g in c.groups] == [str(tmp_path / "x" / "m"), name]
    notes = c.all_notes()
    assert f'{name}: its seeds were evaluated with different mode ("fast", "reference")' in notes, notes
    assert f"{name}: 1 case(s) not in every seed, left out of the group: case11 (not in s2)" in notes
    # a seed scored from a last.pt that a run still going had written: not the finished run's weights
    assert f"{name}: its seeds' checkpoints are of different training iterations (s1 6000, s2 319)" in notes
    assert not any(n.startswith("m:") for n in notes)


def test_few_cases_are_said_when_another_metric_has_none(tmp_path: Path) -> None:
    """Five shared cases, one side's HD95 all NaN: the "only 5 paired cases" note vanished (the fewest
    n over the metrics was 0, which has a note of its own)."""
    five = CASES[:5]
    write_eval(tmp_path / "A", dice_rows(dict.fromkeys(five, 0.8), dict.fromkeys(five, math.nan)))
    write_eval(tmp_path / "B", dice_rows({c: 0.8 + 0.01 * i for i, c in enumerate(five)}))
    c = compare([tmp_path / "A", tmp_path / "B"], metrics=["dice", "hd95"], resamples=50)
    assert c.pairs[0].metrics["dice"].n == 5 and c.pairs[0].metrics["hd95"].n == 0
    notes = c.all_notes()
    assert "B vs A, hd95: no shared case with finite values" in notes
    assert any(n.startswith("B vs A: only 5 paired case(s)") for n in notes), notes


def test_the_scored_checkpoint_names_its_iteration(tmp_path: Path) -> None:
    rows = dice_rows(dict.fromkeys(CASES, 0.8))
    write_eval(tmp_path / "A", rows, checkpoint="/r/a/last.pt", checkpoint_iteration=319)
    write_eval(tmp_path / "B", rows, checkpoint="/r/b/last.pt")
    notes = compare([tmp_path / "A", tmp_path / "B"], metrics=["dice"], resamples=50).all_notes()
    assert "A scored: checkpoint /r/a/last.pt (iteration 319)" in notes and "B scored: checkpoint /r/b/last.pt" in notes
