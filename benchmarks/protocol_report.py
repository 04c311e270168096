"""The Markdown section docs/RESULTS.md shows for one finished protocol run.

Reads a result file of ``benchmarks/protocol_run.py`` (``status: done``) and,
optionally, the run's ``metrics.csv``, and prints:

* the metrics of the last checkpoint (mean ± population std over the test
  cases) with each decision rule it was evaluated with (canet's reference mode,
  the authors' ReLU rule, canet's fast mode), beside the paper's Dice;
* the fast-minus-reference Dice gap against its 0.3-point target, and the
  seconds per volume of each evaluation;
* the kept checkpoints' reference-mode Dice, the best of them marked as
  chosen on the test set (optimistic), and where the result file holds their
  per-case scores, how the last checkpoint differs from each case by case;
* the per-case table (Dice and 95HD of every rule), worst reference Dice first;
* the loss curves: the mean of each logged loss over consecutive windows of
  ``--every`` iterations (for a resumed run, the rows of redone iterations
  count once: the last time each iteration was logged).

Given the interim file of an unfinished run (``protocol_run.py interim``), it
prints that file's evaluations (one row per checkpoint evaluated, with the
attempt and CPU it belongs to), for a checkpoint evaluated in more than one
way the Dice differences from its reference evaluation (mean, median and
largest per case), and each attempt's loss means instead.

With ``--interim`` (the run's interim file) it also prints the evaluations of
earlier checkpoints of the same attempt and, where ``metrics.csv`` is gone with
its run folder, the loss means that file kept, joined into ``--every`` windows.

Every number comes from these files; nothing is recomputed from the
predictions. Usage:

    python benchmarks/protocol_report.py benchmarks/results/la_canet_16_seed1337.json \
        --metrics-csv ~/canet-runs/la_canet_16/seed1337/metrics.csv [--every 500]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from aggregate_results import PAPER_DICE, last_checkpoint_scored

METRICS = ("dice", "jaccard", "hd95", "asd")
RULES = (
    ("reference", "canet, reference mode (mean sigmoid > 0.5, largest component)"),
    ("authors_relu", "the CA-Net authors' rule (mean ReLU(logit) > 0.5, largest component)"),
    ("fast", "canet, fast mode"),
)
LOSSES = ("loss", "loss_dice", "loss_sdf", "loss_adv", "loss_d", "adv_weight", "lr")
GAP_TARGET_POINTS = 0.3


def mean_std(values: list[float | None]) -> tuple[float, float] | None:
    """Mean and population standard deviation (``ddof=0``, as ``summary.json``) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    mean = sum(finite) / len(finite)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))


def _cell(values: list[float | None], scale: float) -> str:
    """``mean ± std`` of the finite values, scaled, and how many were not finite (an empty
    prediction's 95HD/ASD): a mean over fewer cases than the row's count says so."""
    stats = mean_std(values)
    text = "-" if stats is None else f"{stats[0] * scale:.2f} ± {stats[1] * scale:.2f}"
    missing = sum(v is None or not math.isfinite(v) for v in values)
    return f"{text} ({missing} NaN)" if missing else text


def _column(evaluation: dict[str, Any], metric: str) -> list[float | None]:
    return [row.get(metric) for row in evaluation["cases"].values()]


def summary_table(result: dict[str, Any]) -> str:
    evaluations = result.get("evaluations") or {}
    unit = next((e["settings"].get("distance_unit", "voxel") for e in evaluations.values()), "voxel")
    lines = [
        f"| decision rule | cases | Dice % | Jaccard % | 95HD ({unit}) | ASD ({unit}) | s/volume |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in RULES:
        ev = evaluations.get(name)
        if ev is None:
            continue
        cells = [_cell(_column(ev, m), 100.0 if m in ("dice", "jaccard") else 1.0) for m in METRICS]
        spv = ev.get("seconds_per_volume")
        lines.append(f"| {label} | {len(ev['cases'])} | {' | '.join(cells)} | {seconds(spv, 1)} |")
    paper = PAPER_DICE.get(result.get("config", ""))
    if paper is not None:
        lines.append(f"| Zhao et al. (2023), as published | 20 | {paper} | | | | |")
    return "\n".join(lines)


def gap_verdict(gap: float) -> str:
    """``within`` or ``outside`` the fast-vs-reference target, worded for the tables and the gap line."""
    return f"{'within' if abs(gap) <= GAP_TARGET_POINTS else 'outside'} the {GAP_TARGET_POINTS}-point target"


def gap_line(result: dict[str, Any]) -> str:
    gap = result.get("fast_minus_reference_dice_points")
    if gap is None:
        return "Fast minus reference Dice: not available."
    return f"Fast minus reference Dice: {gap:+.2f} points ({gap_verdict(gap)})."


def kept_table(result: dict[str, Any]) -> str:
    """The kept checkpoints' reference-mode Dice in iteration order, the best one marked optimistic.

    Where the result file holds a kept checkpoint's per-case scores (files written since they were
    added), three more columns compare the last checkpoint with it case by case, in Dice points:
    the median of last minus kept, the case furthest from zero, and on how many cases the last
    checkpoint scores lower.
    """
    kept = result.get("kept_checkpoints") or {}
    if not kept:
        return ""
    best = (result.get("best_kept_on_test") or {}).get("iteration")
    last = (result.get("evaluations") or {}).get("reference")
    per_case = last is not None and any(v.get("cases") for v in kept.values())
    head, rule = "| kept checkpoint (iteration) | reference Dice % |", "|---|---|"
    if per_case:
        head += " last minus kept: median per case | largest per case | cases where the last is lower |"
        rule += "---|---|---|"
    lines = [head, rule]
    for it in sorted(kept, key=int):
        dice = kept[it]["mean"].get("dice")
        mark = " (the last checkpoint)" if kept[it].get("same_as") == "last.pt" else ""
        mark += " (best on the test set: optimistic)" if best is not None and int(it) == int(best) else ""
        row = f"| {it}{mark} | {'-' if dice is None else f'{100 * dice:.2f}'} |"
        if per_case:
            d = dice_differences(last, kept[it])  # None for an entry without cases (the last one's)
            if d is None:
                row += " - | - | - |"
            else:
                case, largest = d["largest"]
                row += f" {d['median']:+.2f} | {largest:+.2f} ({case}) | {d['lower']} of {d['cases']} |"
        lines.append(row)
    return "\n".join(lines)


def per_case_table(result: dict[str, Any]) -> str:
    evaluations = result.get("evaluations") or {}
    names = [n for n, _ in RULES if n in evaluations]
    if not names:
        return ""
    ref = evaluations[names[0]]["cases"]

    def key(case: str) -> float:
        d = ref[case].get("dice")
        return d if d is not None else -1.0

    head = " | ".join(f"Dice % {n}" for n in names) + " | " + " | ".join(f"95HD {n}" for n in names)
    lines = [f"| case | {head} |", "|---|" + "---|" * (2 * len(names))]
    for case in sorted(ref, key=key):
        dice = [evaluations[n]["cases"].get(case, {}).get("dice") for n in names]
        hd = [evaluations[n]["cases"].get(case, {}).get("hd95") for n in names]
        cells = [("-" if v is None else f"{100 * v:.2f}") for v in dice] + [("-" if v is None else f"{v:.2f}") for v in hd]
        lines.append(f"| {case} | {' | '.join(cells)} |")
    return "\n".join(lines)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv``, one per logged iteration (the last row where one was logged twice)."""
    by_iteration: dict[int, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            values = {}
            for k, v in row.items():
                try:
                    values[k] = float(v)
                except (TypeError, ValueError):
                    continue
            if "iteration" in values:
                by_iteration[int(values["iteration"])] = values
    return [by_iteration[i] for i in sorted(by_iteration)]


def loss_windows(rows: list[dict[str, float]], every: int) -> list[dict[str, Any]]:
    """Mean of each logged loss (None where not logged) over the windows ``(k - every, k]`` of iterations.

    Each window is ``{"iterations": [first, last], <loss>: mean, ...}``; the last one ends at the last
    logged iteration.
    """
    windows: list[dict[str, Any]] = []
    last = int(rows[-1]["iteration"]) if rows else 0
    start = 0
    while start < last:
        end = min(start + every, last)
        window = [r for r in rows if start < r["iteration"] <= end]
        entry: dict[str, Any] = {"iterations": [start + 1, end]}
        for c in LOSSES:
            stats = mean_std([r[c] for r in window if c in r])
            entry[c] = None if stats is None else stats[0]
        windows.append(entry)
        start = end
    return windows


def windows_table(windows: list[dict[str, Any]]) -> str:
    """A Markdown table of loss windows (:func:`loss_windows`), one column per loss logged in any of them."""
    columns = [c for c in LOSSES if any(w.get(c) is not None for w in windows)]
    lines = ["| iterations | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for w in windows:
        cells = ["-" if w.get(c) is None else f"{w[c]:.4g}" for c in columns]
        lines.append(f"| {w['iterations'][0]}-{w['iterations'][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_table(rows: list[dict[str, float]], every: int) -> str:
    """Mean of each logged loss over the windows ``(k - every, k]`` of iterations."""
    return windows_table(loss_windows(rows, every)) if rows else ""


def merge_windows(windows: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """Loss windows (:func:`loss_windows`) joined into windows ``(k - every, k]``.

    Each new window's loss is the mean of the joined windows' means weighted by how many
    iterations each spans (the rows of ``metrics.csv`` are evenly spaced, so this is the mean of
    the rows). A stored window that straddles a boundary goes whole into the window its last
    iteration falls in.
    """
    groups: dict[int, list[dict[str, Any]]] = {}
    for w in windows:
        groups.setdefault((int(w["iterations"][1]) - 1) // every, []).append(w)
    merged = []
    for _, group in sorted(groups.items()):
        entry: dict[str, Any] = {"iterations": [group[0]["iterations"][0], group[-1]["iterations"][1]]}
        for c in LOSSES:
            pairs = [(w[c], w["iterations"][1] - w["iterations"][0] + 1) for w in group if w.get(c) is not None]
            total = sum(n for _, n in pairs)
            entry[c] = sum(v * n for v, n in pairs) / total if total else None
        merged.append(entry)
    return merged


def interim_attempt(result: dict[str, Any], interim: dict[str, Any] | None) -> dict[str, Any] | None:
    """The attempt of ``interim`` (an interim file) that ``result`` is the result of: same start time."""
    if not interim:
        return None
    return (interim.get("attempts") or {}).get(str(result.get("started")))


def _mean_cells(mean: dict[str, Any]) -> list[str]:
    """The four means of an evaluation as table cells: Dice and Jaccard in %, distances as stored, "-" if absent."""
    return [("-" if mean.get(m) is None else f"{(100 if m in ('dice', 'jaccard') else 1) * mean[m]:.2f}")
            for m in METRICS]


def interim_rows(attempt: dict[str, Any]) -> str:
    """One row per interim evaluation of one attempt (iteration, mode, the four means)."""
    lines = ["| iteration | mode | Dice % | Jaccard % | 95HD | ASD |", "|---|---|---|---|---|---|"]
    for e in attempt.get("evaluations", []):
        mean = e.get("mean") or {}
        lines.append(f"| {e['iteration']} | {e['mode']} | " + " | ".join(_mean_cells(mean)) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def seconds(value: float | None, places: int = 2) -> str:
    """Seconds for a table: ``places`` decimals from 1 s up, three significant digits below
    (a GPU's 0.0223 s/iteration is not shown as 0.02)."""
    if value is None:
        return "-"
    return f"{value:.{places}f}" if abs(value) >= 1 else f"{value:.3g}"


def trained_where(result: dict[str, Any]) -> str:
    """The device a run trained on, e.g. ``cpu (AMD EPYC)`` or ``NVIDIA H200 (host CPU Intel Xeon)``."""
    env = result.get("environment") or {}
    cpu = (result.get("cpu") or {}).get("model", "?")
    if env.get("device_name"):
        return f"{env['device_name']} (host CPU {cpu})"
    return f"{env.get('device') or result.get('device')} ({cpu})"


def report(result: dict[str, Any], metrics: list[dict[str, float]] | None, every: int = 500,
           interim: dict[str, Any] | None = None) -> str:
    parts = [
        f"`{result.get('config')}`, seed {result.get('seed')}: {result.get('iterations')} iterations, "
        f"profile {result.get('profile')}, on {trained_where(result)}; "
        f"steady state {seconds(result.get('sec_per_it'))} s/iteration (mean of the timed steps), "
        f"{seconds(result.get('sec_per_it_median'))} s/iteration (median of the metrics.csv windows), "
        f"{result.get('restarts', 0)} restart(s), {result.get('redone_iterations', 0)} iteration(s) redone, "
        f"{(result.get('progress') or {}).get('stalled_steps', 0)} stalled step(s) left out of the speed. "
        f"Last checkpoint SHA-256 `{result.get('checkpoint_sha256', '?')}`.",
        "Last checkpoint on the test cases:",
        summary_table(result),
        gap_line(result),
    ]
    kept = kept_table(result)
    if kept:
        parts += ["Kept checkpoints, reference mode:", kept]
    lost = result.get("kept_checkpoints_lost")
    if lost is not None:
        scored = ", ".join(lost.get("scored_before") or []) or "none"
        parts.append(f"Kept checkpoints: not evaluated; {lost.get('why')} (scored before: {scored}).")
    closed = result.get("closed_without_run_folder")
    if closed is not None:
        parts.append(f"Result file closed on {closed.get('when')} ({closed.get('cpu')}): {closed.get('why')}.")
    attempt = interim_attempt(result, interim)
    rows = interim_rows(attempt) if attempt else ""
    if rows:
        parts += ["Earlier checkpoints of this run, evaluated on the test cases while it trained "
                  "(`protocol_run.py interim`; any choice among them is optimistic):", rows]
    parts += ["Per case (worst reference Dice first):", per_case_table(result)]
    if metrics:
        parts += [f"Training losses, mean over each {every} iterations (`metrics.csv`):", loss_table(metrics, every)]
    elif attempt and (attempt.get("losses") or {}).get("windows"):
        windows = merge_windows(attempt["losses"]["windows"], every)
        parts += [f"Training losses, mean over each {every} iterations, as far as the interim file kept them "
                  f"(to iteration {windows[-1]['iterations'][1]}):", windows_table(windows)]
    for lost in result.get("lost_runs") or []:
        parts.append(f"An earlier run of this config and seed reached iteration {lost.get('iteration_reached')} "
                     f"on {lost.get('cpu')} and was lost ({lost.get('why')}).")
    return "\n\n".join(p for p in parts if p) + "\n"


def dice_differences(entry: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any] | None:
    """How one evaluation's Dice differs from another's of the same checkpoint, in points.

    Returns ``mean`` (difference of the two means), ``median`` (of the per-case
    differences), ``largest`` (the per-case difference furthest from zero, and
    its case), ``over_1`` (cases differing by more than one point), ``lower``
    (cases where ``entry`` scores below ``baseline``) and ``cases``
    (those both scored); None when no case has a Dice in both.
    """
    diffs = {}
    for case, row in (baseline.get("cases") or {}).items():
        a, b = (entry.get("cases") or {}).get(case, {}).get("dice"), row.get("dice")
        if a is not None and b is not None:
            diffs[case] = 100.0 * (a - b)
    if not diffs:
        return None
    worst = max(diffs, key=lambda c: abs(diffs[c]))
    ma, mb = (entry.get("mean") or {}).get("dice"), (baseline.get("mean") or {}).get("dice")
    return {"mean": None if ma is None or mb is None else 100.0 * (ma - mb),
            "median": statistics.median(diffs.values()), "largest": (worst, diffs[worst]),
            "over_1": sum(abs(d) > 1.0 for d in diffs.values()), "lower": sum(d < 0 for d in diffs.values()),
            "cases": len(diffs)}


def interim_gaps_table(content: dict[str, Any]) -> str:
    """Per checkpoint evaluated in more than one way: fast and authors_relu against reference (Dice points)."""
    lines = ["| attempt started | iteration | compared | mean difference | median per case | largest per case "
             "| cases > 1 point |", "|---|---|---|---|---|---|---|"]
    for started, attempt in content.get("attempts", {}).items():
        by_iteration: dict[int, dict[str, dict[str, Any]]] = {}
        for e in attempt.get("evaluations", []):
            by_iteration.setdefault(e["iteration"], {})[e["mode"]] = e
        for iteration, entries in sorted(by_iteration.items()):
            if "reference" not in entries:
                continue
            for name in (n for n, _ in RULES if n != "reference"):
                d = dice_differences(entries[name], entries["reference"]) if name in entries else None
                if d is None:
                    continue
                mean = "-" if d["mean"] is None else f"{d['mean']:+.2f}"
                if name == "fast" and d["mean"] is not None:
                    mean += f" ({gap_verdict(d['mean'])})"
                case, largest = d["largest"]
                lines.append(f"| {started} | {iteration} | {name} - reference | {mean} | {d['median']:+.2f} | "
                             f"{largest:+.2f} ({case}) | {d['over_1']} of {d['cases']} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def interim_report(content: dict[str, Any]) -> str:
    """The tables of an interim file of ``protocol_run.py interim``: one row per evaluated checkpoint, then
    each attempt's loss means as stored (one row per window)."""
    parts = [f"`{content.get('config')}`, seed {content.get('seed')}: {content.get('note')}."]
    lines = ["| attempt started | CPU | iteration | mode | Dice % | Jaccard % | 95HD | ASD | s/volume |",
             "|---|---|---|---|---|---|---|---|---|"]
    for started, attempt in content.get("attempts", {}).items():
        for e in attempt.get("evaluations", []):
            mean = e.get("mean") or {}
            cells = _mean_cells(mean)
            spv = e.get("seconds_per_volume")
            lines.append(f"| {started} | {attempt.get('cpu')} | {e['iteration']} | {e['mode']} | "
                         + " | ".join(cells) + f" | {seconds(spv, 1)} |")
    parts.append("\n".join(lines))
    gaps = interim_gaps_table(content)
    if gaps:
        parts += ["Dice of the same checkpoint evaluated in two ways (points; positive: better than reference):",
                  gaps]
    for started, attempt in content.get("attempts", {}).items():
        windows = (attempt.get("losses") or {}).get("windows") or []
        if not windows:
            continue
        parts += [f"Training losses of the attempt started {started} (`metrics.csv` means):",
                  windows_table(windows)]
    return "\n\n".join(parts) + "\n"


def _read_json(path: Path) -> dict[str, Any]:
    """``path``'s JSON object; exits with one line where it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        sys.exit(f"error: {path} is not JSON ({exc.msg} at line {exc.lineno})")
    except UnicodeDecodeError:
        sys.exit(f"error: {path} is not UTF-8 text (not a result file)")
    except OSError as exc:
        sys.exit(f"error: cannot read {path} ({exc.strerror or exc})")
    if not isinstance(data, dict):
        sys.exit(f"error: {path} is not a result file of protocol_run.py (a JSON {type(data).__name__})")
    if "attempts" in data and not isinstance(data["attempts"], dict):
        sys.exit(f"error: {path}: 'attempts' is not an object (not an interim file of protocol_run.py)")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path,
                        help="a result file of benchmarks/protocol_run.py (or its interim file)")
    parser.add_argument("--metrics-csv", type=Path, help="the run's metrics.csv, for the loss curves")
    parser.add_argument("--every", type=int, default=500, help="iterations per loss window (default 500)")
    parser.add_argument("--interim", type=Path,
                        help="the run's interim file: its evaluations of earlier checkpoints and, without "
                             "--metrics-csv, its loss means")
    args = parser.parse_args(argv)
    for path in (args.result, args.metrics_csv, args.interim):
        if path is not None and not path.is_file():
            sys.exit(f"error: {path} not found")
    if args.every < 1:
        sys.exit(f"error: --every must be >= 1, got {args.every}")
    result = _read_json(args.result)
    if "attempts" in result:  # an interim file of `protocol_run.py interim`
        sys.stdout.write(interim_report(result))
        return 0
    evaluations = result.get("evaluations")
    status = result.get("status")
    # The protocol's result is the last checkpoint in every way; a run still scoring its kept
    # checkpoints (--kept) already holds it, and the report says the rest is to come.
    if status != "done" and not last_checkpoint_scored(result):
        sys.exit(f"error: {args.result} is not a finished run (status {status!r})")
    if not isinstance(evaluations, dict) or not isinstance(evaluations.get("reference"), dict) \
            or not isinstance(evaluations["reference"].get("cases"), dict):
        sys.exit(f"error: {args.result} says done but lacks its reference evaluation with its cases")
    metrics = None
    if args.metrics_csv:
        try:
            metrics = read_metrics(args.metrics_csv)
        except (OSError, UnicodeDecodeError) as exc:
            sys.exit(f"error: cannot read {args.metrics_csv} ({exc})")
        if not metrics or not any(k in row for row in metrics for k in LOSSES):
            sys.exit(f"error: {args.metrics_csv} holds no iteration rows with losses (not a run's metrics.csv)")
    interim = None
    if args.interim is not None:
        interim = _read_json(args.interim)
        if "attempts" not in interim:
            sys.exit(f"error: {args.interim} is not an interim file of protocol_run.py (no 'attempts')")
        if interim_attempt(result, interim) is None:
            sys.exit(f"error: {args.interim} holds no attempt started {result.get('started')!r} "
                     f"(it has {', '.join(interim['attempts']) or 'none'})")
    text = report(result, metrics, args.every, interim)
    if status != "done":
        text = (f"Still running: its last checkpoint is evaluated in every way (the result below); the kept "
                f"checkpoints' evaluations are still to come.\n\n{text}")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
