"""Collect the evaluations of runs laid out as OUT/<config>/seed<S>/eval/ into tables.

Prints Markdown: per config the mean and std over seeds of each metric's per-seed
mean (over the cases finite in every seed; a cell names how many cases it left out
as NaN, e.g. a missed structure's 95HD), the number of seeds, the training time per run and the paper's figure where
the paper gives one; then the paired per-case comparison of every config with the
reference config (per-case means over seeds, 95 % bootstrap CI, Wilcoxon p, seed
std beside the difference), computed by :mod:`canet.comparison` (``canet compare``)
and also written to OUT/compare.md and OUT/compare.json.

With ``--results DIR`` it reads the result files of ``benchmarks/protocol_run.py``
(``<config>_seed<seed>.json``, committed under ``benchmarks/results``) instead and
prints the GPU table of docs/RESULTS.md: per config the reference-mode metrics
(mean ± std over seeds), the fast-mode Dice beside them, seconds per iteration,
training minutes and the GPU, then the paired comparison and the runs that failed.
``--results`` may be given more than once (runs made on the CPU and on a GPU are
kept in separate folders); the same config and seed finished in two of them is
refused, and a paired comparison of runs trained on different devices or
profiles says so under its table.

With ``--across FIRST SECOND`` it compares the runs finished in both result folders (the
same config and seed trained twice, e.g. in the exact profile on the CPU and in the fast
profile on a GPU), per config, SECOND's per-case values against FIRST's.

Usage: python benchmarks/aggregate_results.py OUT_DIR [--reference CONFIG] [--metric dice ...]
       python benchmarks/aggregate_results.py --results benchmarks/results [--results DIR ...]
           [--reference la_vnet_16]
       python benchmarks/aggregate_results.py --across benchmarks/results benchmarks/results/h200
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from protocol_run import EVALUATIONS  # benchmarks/ is on sys.path when a script of it runs

from canet.cli.argtypes import nonnegative_int, positive_int
from canet.comparison import (
    Comparison,
    Evaluation,
    Group,
    compare_groups,
    load_group,
    recorded_distance_unit,
)
from canet.errors import CanetError

# Dice (%) reported by Zhao et al. (2023) on LA and, for the fully supervised
# V-Net, the range reported across the semi-supervised LA literature.
PAPER_DICE = {
    "la_canet_8": "88.14",
    "la_canet_16": "90.09",
    "la_vnet_full": "91.1-91.6",
}
METRICS = ("dice", "jaccard", "hd95", "asd")
# The name of a run's result file (protocol_run.result_path); other files beside it are not runs.
RESULT_NAME = re.compile(r".+_seed\d+\.json")


def _mean_std(mean: float | None, std: float | None, scale: float) -> str:
    """``mean ± std`` scaled; the mean alone where there is no std (one seed: its spread is unknown, not 0)."""
    if mean is None:
        return "-"
    return f"{mean * scale:.2f}" if std is None else f"{mean * scale:.2f} ± {std * scale:.2f}"


def _seed_cell(group: Group, metric: str) -> str:
    """Mean ± std over seeds of each seed's mean (:meth:`Group.statistics`), with the number of
    cases left out as NaN (a missed structure's 95HD/ASD) when there are any."""
    st = group.statistics(metric)
    text = _mean_std(st["seed_mean"], st["seed_std"], 100.0 if metric in ("dice", "jaccard") else 1.0)
    return f"{text} ({st['nan']} NaN)" if st["nan"] else text


def distance_label(groups: list[Group]) -> str:
    """The unit of the 95HD/ASD columns: ``vox`` or ``mm`` as the evaluations record it,
    ``unit?`` where none records one.

    Raises:
        CanetError: the evaluations record different units (a mean over seeds, or one
            column, would mix them).
    """
    unit = recorded_distance_unit(groups)
    if unit is None:
        return "unit?"
    return {"voxels": "vox", "voxel": "vox"}.get(unit, unit)


def group_notes(groups: list[Group]) -> list[str]:
    """The groups' own notes (cases not in every seed, seeds evaluated differently), as list items."""
    return [f"- {note}" for g in groups for note in g.named_notes()]


def load_groups(out_dir: Path) -> tuple[list[Group], list[str]]:
    """One :class:`Group` per config folder under ``out_dir`` holding at least one
    evaluated seed, and a note per config folder without any."""
    if not out_dir.is_dir():
        raise CanetError(f"protocol run folder not found: {out_dir}")
    groups: list[Group] = []
    skipped: list[str] = []
    for cfg_dir in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        try:
            groups.append(load_group(cfg_dir))
        except CanetError as exc:
            if "holds no evaluation" not in str(exc):
                raise
            skipped.append(f"{cfg_dir.name}: no evaluated seed yet, left out")
    return groups, skipped


def collect(out_dir: Path) -> list[dict[str, object]]:
    """One row per config folder under ``out_dir`` (mean ± std over seeds per metric)."""
    groups, _ = load_groups(out_dir)
    return rows_of(groups)


def rows_of(groups: list[Group]) -> list[dict[str, object]]:
    """The summary rows of ``groups`` (seed means from :meth:`Group.statistics`)."""
    rows: list[dict[str, object]] = []
    for group in groups:
        cells: dict[str, object] = {"config": group.name, "seeds": group.n_seeds}
        for m in METRICS:
            cells[m] = _seed_cell(group, m)
        seconds = [_train_seconds(t) for t in (ev.path.parent / "train_seconds.txt" for ev in group.members)
                   if t.is_file()]
        cells["hours"] = f"{statistics.fmean(seconds) / 3600:.2f}" if seconds else "-"
        cells["paper"] = PAPER_DICE.get(group.name, "-")
        rows.append(cells)
    return rows


def to_markdown(rows: list[dict[str, object]], unit: str = "vox") -> str:
    """The seed table of :func:`rows_of` (``unit``: of the 95HD/ASD columns, see :func:`distance_label`)."""
    header = f"| config | seeds | Dice % | Jaccard % | 95HD ({unit}) | ASD ({unit}) | h/run | paper Dice % |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['seeds']} | {r['dice']} | {r['jaccard']} | {r['hd95']} "
            f"| {r['asd']} | {r['hours']} | {r['paper']} |"
        )
    return "\n".join(lines)


def _run_key(result: dict[str, Any]) -> tuple[str, int]:
    """A result file's (config, seed): what names one run, and the order of the tables."""
    return str(result.get("config")), int(result.get("seed", 0))


#: The evaluations of a run's last checkpoint, its result in the protocol.
LAST_CHECKPOINT_MODES = tuple(EVALUATIONS)


def last_checkpoint_scored(result: dict[str, Any]) -> bool:
    """Whether ``result`` is a run still scoring its kept checkpoints (``--kept``) whose last
    checkpoint is already evaluated in every way: its result in the protocol is complete."""
    evaluations = result.get("evaluations")
    return (result.get("status") == "running" and bool(result.get("checkpoint_sha256"))
            and isinstance(evaluations, dict) and all(m in evaluations for m in LAST_CHECKPOINT_MODES))


def _train_seconds(path: Path) -> float:
    """The number in a run's ``train_seconds.txt``."""
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    try:
        return float(text)
    except ValueError:
        raise CanetError(f"{path} does not hold a number of seconds: {text[:40]!r}") from None


def _check_result(data: Any, path: Path) -> None:
    """CanetError unless ``data`` has the shape of a protocol_run.py result file (what the tables read)."""
    if not isinstance(data, dict):
        raise CanetError(f"{path} is not a protocol result file (a JSON {type(data).__name__}, not an object)")
    try:
        int(data.get("seed", 0))
    except (TypeError, ValueError):
        raise CanetError(f"{path}: seed {data.get('seed')!r} is not an integer") from None
    if data.get("status") not in ("done", "finished") and not last_checkpoint_scored(data):
        return
    evaluations = data.get("evaluations")
    if not isinstance(evaluations, dict) or not isinstance(evaluations.get("reference"), dict) \
            or not isinstance(evaluations["reference"].get("cases"), dict):
        raise CanetError(f"{path} says {data.get('status')!r} but holds no reference evaluation with its cases")
    for key in ("sec_per_it", "train_seconds"):
        if data.get(key) is not None and not isinstance(data[key], (int, float)):
            raise CanetError(f"{path}: {key} {data[key]!r} is not a number")


def read_results(results: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The finished and the unfinished (running or failed) result files under ``results``
    (sorted by config, seed)."""
    if not results.is_dir():
        raise CanetError(f"results folder not found: {results}")
    finished, failed = [], []
    for path in sorted(results.glob("*_seed*.json")):
        if not RESULT_NAME.fullmatch(path.name):  # e.g. the interim file <config>_seed<S>_interim.json
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CanetError(f"cannot read {path}: {exc}") from None
        _check_result(data, path)
        data["_path"] = str(path)
        # "finished": what result files said before protocol_run.py wrote running / done / failed.
        counted = data.get("status") in ("done", "finished") or last_checkpoint_scored(data)
        (finished if counted else failed).append(data)
    return sorted(finished, key=_run_key), sorted(failed, key=_run_key)


def read_result_folders(folders: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`read_results` of several folders together.

    Raises:
        CanetError: a config and seed is finished in two of the folders (which one is meant
            cannot be guessed; counting both would make one seed look like two).
    """
    finished: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    seen: dict[tuple[str, int], str] = {}
    for folder in folders:
        done, other = read_results(folder)
        for r in done:
            key = _run_key(r)
            if key in seen:
                raise CanetError(f"{key[0]} seed {key[1]} is finished in two result folders ({seen[key]} and "
                                 f"{r['_path']}); give one of them")
            seen[key] = r["_path"]
        finished += done
        failed += other
    return sorted(finished, key=_run_key), sorted(failed, key=_run_key)


def trained_on(result: dict[str, Any]) -> str:
    """Where and how a run was trained, e.g. ``NVIDIA H200, fast profile`` or
    ``cpu (Intel(R) Xeon(R) Processor), exact profile``."""
    env = result.get("environment") or {}
    device = env.get("device_name")
    if not device:
        model = (result.get("cpu") or {}).get("model")
        device = f"{env.get('device') or 'cpu'} ({model})" if model else str(env.get("device") or "unknown device")
    profile = (result.get("settings") or {}).get("profile") or result.get("profile") or "unknown"
    return f"{device}, {profile} profile"


def mixed_training_note(finished: list[dict[str, Any]]) -> str | None:
    """A line saying that the compared configs were not trained alike, or None when they were."""
    by_config: dict[str, set[str]] = {}
    for r in finished:
        by_config.setdefault(str(r["config"]), set()).add(trained_on(r))
    if len({frozenset(v) for v in by_config.values()}) <= 1:
        return None
    parts = "; ".join(f"{cfg}: {', '.join(sorted(v))}" for cfg, v in sorted(by_config.items()))
    return (f"Not like for like: the configs were trained on different devices or profiles ({parts}); "
            "a difference above may come from that as well as from the method.")


def _evaluation(result: dict[str, Any], mode: str) -> Evaluation:
    """A result file's evaluation in ``mode`` as a :class:`canet.comparison.Evaluation`."""
    ev = result["evaluations"][mode]
    rows = {
        case: {"case": case, **{m: "nan" if values.get(m) is None else repr(float(values[m])) for m in METRICS}}
        for case, values in ev["cases"].items()
    }
    settings = ev.get("settings") or {}
    summary: dict[str, Any] = {"cases": len(rows), "distance_unit": settings.get("distance_unit")}
    summary.update({k: settings[k] for k in ("mode", "tta", "lcc") if k in settings})
    if result.get("checkpoint_sha256"):
        # What compare's notes name as the scored checkpoint (the data path differs between machines).
        summary["checkpoint"] = f"last.pt of {Path(result['_path']).name} (sha256 {result['checkpoint_sha256'][:12]})"
    return Evaluation(path=Path(result["_path"]), columns=["case", *METRICS], rows=rows, summary=summary)


def result_groups(finished: list[dict[str, Any]], mode: str = "reference") -> list[Group]:
    """One :class:`Group` per config (its seeds as members) from finished result files."""
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in finished:
        by_config.setdefault(r["config"], []).append(r)
    return [
        Group(name=cfg, path=Path(runs[0]["_path"]).parent, members=[_evaluation(r, mode) for r in runs],
              member_names=[f"seed{r['seed']}" for r in runs])
        for cfg, runs in sorted(by_config.items())
    ]


def gpu_table(finished: list[dict[str, Any]], failed: list[dict[str, Any]]) -> str:
    """The Markdown table of the GPU section of docs/RESULTS.md."""
    ref_groups = {g.name: g for g in result_groups(finished, "reference")}
    # the fast-mode column only for configs whose every seed has a fast evaluation
    no_fast = {r["config"] for r in finished if "fast" not in r["evaluations"]}
    fast_groups = {g.name: g for g in result_groups([r for r in finished if r["config"] not in no_fast], "fast")}
    unit = distance_label(list(ref_groups.values()))
    header = (f"| config | seeds | Dice % | Jaccard % | 95HD ({unit}) | ASD ({unit}) | fast-mode Dice % "
              "| paper Dice % | s/it | train min | device |")
    lines = [header, "|" + "---|" * 11]
    for name, group in ref_groups.items():
        runs = [r for r in finished if r["config"] == name]
        cells = [_seed_cell(group, m) for m in METRICS]
        fast = _seed_cell(fast_groups[name], "dice") if name in fast_groups else "-"
        timed = [r for r in runs if r.get("sec_per_it") is not None and r.get("train_seconds") is not None]
        spi = statistics.fmean(r["sec_per_it"] for r in timed) if timed else float("nan")
        minutes = statistics.fmean(r["train_seconds"] for r in timed) / 60 if timed else float("nan")
        gpus = sorted({str((r.get("environment") or {}).get("device_name") or (r.get("cpu") or {}).get("model")
                           or "cpu") for r in runs})
        lines.append(
            f"| {name} | {group.n_seeds} | {' | '.join(cells)} | {fast} | {PAPER_DICE.get(name, '-')} "
            f"| {spi:.4f} | {minutes:.1f} | {', '.join(gpus)} |"
        )
    scoring = [r for r in finished if r.get("status") == "running"]
    if scoring:
        lines.append("")
        lines += [f"- {r.get('config')} seed {r.get('seed')}: its last checkpoint (the result) is evaluated in every "
                  "way; its kept checkpoints are still being evaluated" for r in scoring]
    if failed:
        lines.append("")
        lines.append("Runs that did not finish:")
        for r in failed:
            if r.get("status") == "running":
                spi = r.get("sec_per_it")
                speed = f", {spi:.2f} s/it, expected end {r.get('expected_end')}" if spi is not None else ""
                lines.append(f"- {r.get('config')} seed {r.get('seed')}: running, iteration "
                             f"{r.get('iteration')}{speed}")
            else:
                lines.append(f"- {r.get('config')} seed {r.get('seed')}: {r.get('status')}: {r.get('error')}")
    return "\n".join(lines)


ACROSS_NOTE = (
    "The same config and seed trained twice: the runs drift apart from the first iterations (other "
    "rounding, other random streams), so the difference mixes what the device and profile change with "
    "run-to-run variation; one seed cannot tell the two apart, several seeds per side can."
)


def across_groups(first: Path, second: Path) -> list[tuple[Group, Group]]:
    """Per config, the runs finished in both result folders (same config and seed), as two groups.

    Each pair of groups holds the seeds finished in both folders, in the same order, evaluated
    in reference mode; the first group comes from ``first``. A group is named by config and by
    how its runs were trained (:func:`trained_on`), or by its folder where both were trained alike.

    Raises:
        CanetError: a folder is missing or unreadable, or no config and seed is finished in both.
    """
    done_first, _ = read_results(first)
    done_second = {_run_key(r): r for r in read_results(second)[0]}
    by_config: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in done_first:
        other = done_second.get(_run_key(r))
        if other is not None:
            by_config.setdefault(str(r["config"]), []).append((r, other))
    if not by_config:
        raise CanetError(f"no config and seed is finished in both {first} and {second}")
    out = []
    for cfg, runs in sorted(by_config.items()):
        labels = [", ".join(sorted({trained_on(pair[i]) for pair in runs})) for i in (0, 1)]
        if labels[0] == labels[1]:
            labels = [str(first), str(second)]
        groups = tuple(
            Group(name=f"{cfg} ({labels[i]})", path=folder,
                  members=[_evaluation(pair[i], "reference") for pair in runs],
                  member_names=[f"seed{pair[i]['seed']}" for pair in runs])
            for i, folder in enumerate((first, second))
        )
        out.append((groups[0], groups[1]))
    return out


def across(first: Path, second: Path, metrics: list[str], resamples: int, seed: int) -> str:
    """Markdown: per config finished in both folders, the paired comparison of ``second``'s
    runs against ``first``'s (reference mode), with :data:`ACROSS_NOTE` under it."""
    tables = [
        compare_groups(pair, metrics=metrics, reference=0, resamples=resamples, seed=seed)
        .markdown(kinds=("pairs",)).rstrip("\n")
        for pair in across_groups(first, second)
    ]
    return "\n\n".join([*tables, ACROSS_NOTE])


def paired(
    groups: list[Group], reference: str | None, metrics: list[str], resamples: int, seed: int
) -> Comparison | None:
    """The paired comparison of every config with ``reference`` (None with fewer than 2 configs)."""
    if len(groups) < 2:
        return None
    if reference is not None and reference not in [g.name for g in groups]:
        raise CanetError(f"reference config {reference!r} not found (configs: {', '.join(g.name for g in groups)})")
    return compare_groups(groups, metrics=metrics, reference=reference, resamples=resamples, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, nargs="?", help="protocol run folder (OUT/<config>/seed<S>/eval)")
    parser.add_argument("--results", type=Path, action="append",
                        help="read protocol_run.py result files from this folder instead (repeatable)")
    parser.add_argument("--across", type=Path, nargs=2, metavar=("FIRST", "SECOND"),
                        help="compare the runs finished in both result folders (same config and seed, "
                             "e.g. exact CPU and fast GPU runs): SECOND's against FIRST's")
    parser.add_argument("--reference", default=None, help="config the others are compared with (default the first)")
    parser.add_argument("--metric", nargs="+", default=["dice"], help="metrics of the paired table (default dice)")
    parser.add_argument("--resamples", type=positive_int, default=10_000, help="bootstrap resamples (default 10000)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args()
    if args.across is not None:
        try:
            print(across(*args.across, args.metric, args.resamples, args.seed))
        except CanetError as exc:
            sys.exit(f"error: {exc}")
        return
    if args.results is not None:
        try:
            finished, failed = read_result_folders(args.results)
            text = gpu_table(finished, failed)
            groups = result_groups(finished)
            comparison = paired(groups, args.reference, args.metric, args.resamples, args.seed)
        except CanetError as exc:
            sys.exit(f"error: {exc}")
        notes = group_notes(groups)
        if comparison is not None:  # its notes hold the groups' notes
            text += "\n\n" + comparison.markdown(kinds=("pairs",)).rstrip("\n")
            note = mixed_training_note(finished)
            if note is not None:
                text += "\n\n" + note
        elif notes:
            text += "\n\n" + "\n".join(notes)
        print(text)
        return
    if args.out_dir is None:
        parser.error("give OUT_DIR or --results DIR")
    try:
        groups, skipped = load_groups(args.out_dir)
        text = to_markdown(rows_of(groups), distance_label(groups))
        comparison = paired(groups, args.reference, args.metric, args.resamples, args.seed)
    except CanetError as exc:
        sys.exit(f"error: {exc}")
    notes = group_notes(groups)
    if comparison is not None:  # its notes hold the groups' notes
        comparison.write(args.out_dir)
        text += "\n\n" + comparison.markdown(kinds=("pairs",)).rstrip("\n")
    elif notes:
        text += "\n\n" + "\n".join(notes)
    if skipped:
        text += "\n\n" + "\n".join(f"- {line}" for line in skipped)
    print(text)


if __name__ == "__main__":
    main()
