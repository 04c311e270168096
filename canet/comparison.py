"""Compare evaluations: per-group summaries, seed spread and paired per-case statistics.

The function behind ``canet compare``. Each **group** is one method/config:

- one evaluation folder (``metrics.csv`` with a ``case`` column + ``summary.json``,
  as written by ``canet evaluate`` / ``canet score``), or a run folder whose
  ``eval/`` holds one; or
- a folder of such folders, one per training seed of the same config (e.g.
  ``runs/paper_protocol/la_canet_16/`` holding ``seed1337/eval`` ...); sub-folders
  without an evaluation are listed as ignored; or, from Python, an explicit list of
  evaluation folders (:func:`load_group`).

Per group and metric: mean and std (population, ``ddof=0``, as ``summary.json``)
over cases; with several seeds, each case's value is its mean over the seeds, and
the group also gets the mean and std (sample, ``ddof=1``) of the seeds' means.

Every other group is compared with the reference group (the first unless named)
on the cases both hold, matched by case id (see :mod:`canet.metrics.paired`): mean
paired difference ``other - reference``, bootstrap CI, Wilcoxon p-value, cases
better / worse / tied for ``other``. Cases missing on one side and values that are
NaN are left out and named in the notes (how many per metric, and with
``distance_penalty`` a missed structure's HD95/ASD counts as that distance
instead, see :func:`compare_groups`); a case of a seed group is NaN when it is
NaN in any of its seeds (no seed is silently skipped for one case). With seeds,
the table also gives each side's seed std next to the difference: the CI covers
the choice of test cases, not the choice of seed.

Output: :meth:`Comparison.markdown` (stdout, ``compare.md``) and
:meth:`Comparison.to_dict` (``compare.json``; NaN written as ``null``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from canet.errors import CanetError
from canet.io import atomic_write_text
from canet.metrics.paired import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    TIE_DECIMALS,
    PairedStatistics,
    higher_is_better,
    match_cases,
    paired_statistics,
)
from canet.metrics.summary import METRICS, stats

#: summary.json keys that say what was scored: the data (``canet evaluate``), the ground
#: truth (``canet score``) and the checkpoint; each group's are named in the notes.
SOURCE_KEYS: tuple[str, ...] = ("data", "gt", "checkpoint")
#: summary.json keys that say how an evaluation was made; differences are noted
#: (the checkpoint between groups only: the seeds of a group have one each).
SETTING_KEYS: tuple[str, ...] = (
    "data", "gt", "checkpoint", "split", "mode", "decision", "tta", "lcc", "overlap", "weighting", "patch_size",
    "amp", "normalize",
)
#: Keys whose difference means the case ids may name different scans.
DATA_KEYS: tuple[str, ...] = ("data", "gt")
#: config.yaml keys that may differ between the seeds of one config without a note.
SEED_FREE_KEYS: frozenset[str] = frozenset({"seed", "data.root", "data.num_workers", "train.device"})
DISTANCE_METRICS: tuple[str, ...] = ("hd95", "asd")
#: Below this many paired cases a pair's notes say that its CI and p-value rest on few cases.
FEW_CASES = 10

__all__ = [
    "Comparison",
    "check_distance_penalty",
    "Evaluation",
    "Group",
    "compare",
    "compare_groups",
    "find_evaluation",
    "load_evaluation",
    "load_group",
    "recorded_distance_unit",
]


# --------------------------------------------------------------------------- loading


def _existing_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as a path, refused in one line when it is a file or does not exist."""
    root = Path(folder)
    if root.is_file():
        raise CanetError(f"{root} is a file; give the evaluation folder (the one holding metrics.csv)")
    if not root.is_dir():
        raise CanetError(f"evaluation folder not found: {root}")
    return root


def find_evaluation(folder: str | os.PathLike[str]) -> Path | None:
    """``folder`` or ``folder/eval``, whichever holds ``metrics.csv`` and ``summary.json``; else None."""
    root = Path(folder)
    for cand in (root, root / "eval"):
        if (cand / "metrics.csv").is_file() and (cand / "summary.json").is_file():
            return cand
    return None


@dataclass
class Evaluation:
    """One evaluation folder: per-case rows of ``metrics.csv`` and ``summary.json``.

    Attributes:
        path: the folder holding both files.
        columns: ``metrics.csv``'s header.
        rows: ``{case: {column: text}}`` in file order.
        summary: ``summary.json`` as a dict.
    """

    path: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]
    summary: dict[str, Any]

    @property
    def distance_unit(self) -> str | None:
        """``"voxels"``, ``"mm"``, ``"mixed"`` or None (not recorded)."""
        unit = self.summary.get("distance_unit") or self.summary.get("spacing")
        return str(unit) if unit is not None else None

    def values(self, metric: str, penalty: str | float | None = None) -> dict[str, float]:
        """``{case: value}`` of one column (``nan`` text gives NaN).

        Args:
            metric: the column.
            penalty: for HD95/ASD columns, the value a missed structure gets
                instead of NaN (see :meth:`misses`): a number, or
                ``"diagonal"`` (each case's ``diagonal`` column: the volume's
                diagonal in the distance unit); None keeps NaN.

        Raises:
            CanetError: the column does not exist or holds a non-number, or
                ``"diagonal"`` for a ``metrics.csv`` without that column.
        """
        out = self._column(metric)
        if not metric.startswith(DISTANCE_METRICS):
            return out
        classes = self._class_columns(metric)
        missed = self.misses(metric)
        if penalty is None:
            # A class mean over the classes found would hide a missed class: the case is a miss.
            return {c: math.nan if c in missed and classes else v for c, v in out.items()}
        if not missed:
            return out
        if penalty == "diagonal":
            if "diagonal" not in self.columns:
                raise CanetError(
                    f"{self.path / 'metrics.csv'} has no 'diagonal' column (written by an older canet): "
                    "give --distance-penalty a number of the distance unit instead"
                )
            fill = self._column("diagonal")
        else:
            fill = dict.fromkeys(out, float(penalty))
        if not classes:
            return {c: fill[c] if c in missed else v for c, v in out.items()}
        # Multi-class mean: each missed class at the penalty, then the mean over the classes
        # that either mask holds (a class absent from both stays out, as in metrics.csv).
        per_class = [(self.values(col), self.misses(col)) for col in classes]
        result = dict(out)
        for case in missed:
            parts = [fill[case] if case in miss else vals[case] for vals, miss in per_class
                     if case in miss or not math.isnan(vals[case])]
            result[case] = sum(parts) / len(parts)
        return result

    def misses(self, metric: str) -> set[str]:
        """Cases whose ``metric`` (HD95/ASD, or a per-class column) is NaN because one mask was empty.

        That is a NaN distance where the Dice of the same class is 0: the
        structure was missed (or predicted where there is none); where both
        masks are empty Dice is NaN too and the case is not a miss. For the mean
        column of a multi-class evaluation (``hd95`` beside ``hd95_1``, ``hd95_2``,
        ...), a case is a miss where any class was missed, although the mean over
        the classes found is a number: it would favour the method that lost a class.
        """
        if not metric.startswith(DISTANCE_METRICS):
            return set()
        classes = self._class_columns(metric)
        if classes:  # the mean of a multi-class evaluation: missed where any class was missed
            return set().union(*(self.misses(col) for col in classes))
        dice_column = "dice" + metric[len(metric.split("_")[0]):]
        if dice_column not in self.columns:
            return set()
        values, dice = self._column(metric), self._column(dice_column)
        return {c for c, v in values.items() if math.isnan(v) and dice[c] == 0.0}

    def _class_columns(self, metric: str) -> list[str]:
        """The per-class columns (``hd95_1``, ``hd95_2``, ...) behind the mean column ``metric``, if any."""
        if metric not in DISTANCE_METRICS:
            return []
        return [c for c in self.columns if c.startswith(metric + "_") and c[len(metric) + 1:].isdigit()]

    def _column(self, metric: str) -> dict[str, float]:
        if metric not in self.columns or metric == "case":
            available = ", ".join(c for c in self.columns if c not in ("case", "seconds", "diagonal"))
            raise CanetError(f"metric {metric!r} is not a column of {self.path / 'metrics.csv'} (it has: {available})")
        out: dict[str, float] = {}
        for case, row in self.rows.items():
            text = (row.get(metric) or "").strip()
            try:
                out[case] = float(text)
            except ValueError:
                raise CanetError(
                    f"{self.path / 'metrics.csv'}: case {case!r} has {metric} = {text!r}, not a number"
                ) from None
        return out


def load_evaluation(folder: str | os.PathLike[str]) -> Evaluation:
    """Read an evaluation folder (or a run folder whose ``eval/`` is one).

    Raises:
        CanetError: missing folder or file, unreadable JSON, a ``metrics.csv``
            without a ``case`` column or without rows, a case listed twice, or a
            case count that disagrees with ``summary.json``.
    """
    root = _existing_folder(folder)
    path = find_evaluation(root)
    if path is None:
        raise CanetError(f"{root} holds no evaluation (metrics.csv and summary.json, in it or in {root / 'eval'})")
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CanetError(f"cannot read {path / 'summary.json'}: {exc}") from None
    if not isinstance(summary, dict):
        raise CanetError(f"{path / 'summary.json'} is not a JSON object")
    csv_path = path / "metrics.csv"
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CanetError(f"cannot read {csv_path}: {exc}") from None
    if "case" not in columns:
        raise CanetError(f"{csv_path} has no 'case' column (columns: {', '.join(columns) or 'none'}); "
                         "expected the metrics.csv of canet evaluate or canet score")
    rows: dict[str, dict[str, str]] = {}
    for row in raw:
        case = (row.get("case") or "").strip()
        if not case:
            raise CanetError(f"{csv_path} has a row without a case id")
        if case in rows:
            raise CanetError(f"{csv_path} lists case {case!r} twice")
        rows[case] = {k: v for k, v in row.items() if k is not None}
    if not rows:
        raise CanetError(f"{csv_path} has no cases")
    expected = summary.get("cases")
    if isinstance(expected, int) and expected != len(rows):
        raise CanetError(f"{path / 'summary.json'} counts {expected} cases but {csv_path} has {len(rows)}")
    return Evaluation(path=path, columns=columns, rows=rows, summary=summary)


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        out.update(_flatten(value, f"{prefix}{key}." if isinstance(value, dict) else f"{prefix}{key}"))
    return out


def _run_config(evaluation: Evaluation) -> dict[str, Any] | None:
    """The flattened ``config.yaml`` of the run an ``eval/`` folder belongs to, if any."""
    if evaluation.path.name != "eval":
        return None
    cfg = evaluation.path.parent / "config.yaml"
    if not cfg.is_file():
        return None
    import yaml

    from canet.parsing import parse_yaml

    try:
        data = parse_yaml(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return _flatten(data) if isinstance(data, dict) else None


def _default_name(path: Path) -> str:
    p = Path(os.path.normpath(path))
    return p.parent.name if p.name == "eval" and p.parent.name else (p.name or str(p))


@dataclass
class Group:
    """One method/config: one evaluation, or several (one per seed).

    Attributes:
        name: label in the tables.
        path: the folder given (the first member's for an explicit list).
        members: the evaluations (seeds), in sorted folder order.
        member_names: their labels (sub-folder names).
        ignored: sub-folders that held no evaluation.
        notes: remarks about the group (settings that differ between seeds, cases
            not in every seed ...), added when the group is made; without the group's
            name, which may change later (:meth:`named_notes` puts it in front of each).

    Raises:
        CanetError: the members share no case, or their runs are of different methods.
    """

    name: str
    path: Path
    members: list[Evaluation]
    member_names: list[str]
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_members(self)

    def named_notes(self) -> list[str]:
        """:attr:`notes`, each after the group's name as the tables show it (``"name: note"``)."""
        return [f"{self.name}: {note}" for note in self.notes]

    @property
    def n_seeds(self) -> int:
        """Number of evaluations (seeds) in the group."""
        return len(self.members)

    @property
    def cases(self) -> list[str]:
        """Cases present in every member, in the first member's order."""
        common = set(self.members[0].rows)
        for m in self.members[1:]:
            common &= set(m.rows)
        return [c for c in self.members[0].rows if c in common]

    @property
    def incomplete_cases(self) -> dict[str, list[str]]:
        """``{case: [members lacking it]}`` for cases missing from some member."""
        every: list[str] = []
        for m in self.members:
            every += [c for c in m.rows if c not in every]
        out: dict[str, list[str]] = {}
        for case in every:
            lacking = [n for n, m in zip(self.member_names, self.members) if case not in m.rows]
            if lacking:
                out[case] = lacking
        return out

    @property
    def distance_units(self) -> set[str | None]:
        """Distance units recorded by the members."""
        return {m.distance_unit for m in self.members}

    def member_values(self, metric: str, penalty: str | float | None = None) -> list[dict[str, float]]:
        """``{case: value}`` of every member, restricted to :attr:`cases` (``penalty``: see :meth:`Evaluation.values`)."""
        cases = self.cases
        tables = [m.values(metric, penalty) for m in self.members]
        return [{c: t[c] for c in cases} for t in tables]

    def misses(self, metric: str) -> list[str]:
        """Cases of :attr:`cases` where some seed missed the structure (see :meth:`Evaluation.misses`)."""
        missed = set().union(*(m.misses(metric) for m in self.members))
        return [c for c in self.cases if c in missed]

    def values(self, metric: str, penalty: str | float | None = None) -> dict[str, float]:
        """``{case: value}``: the value, or with seeds its mean over the seeds.

        A case is NaN when any seed's value for it is not finite (after the
        ``penalty`` of missed structures, see :meth:`Evaluation.values`).
        """
        tables = self.member_values(metric, penalty)
        out: dict[str, float] = {}
        for case in self.cases:
            vals = [t[case] for t in tables]
            out[case] = float(np.mean(vals)) if all(math.isfinite(v) for v in vals) else math.nan
        return out

    def statistics(self, metric: str, penalty: str | float | None = None) -> dict[str, Any]:
        """Per-metric summary of the group.

        Returns:
            ``{"mean", "std", "n", "nan"}`` over cases (population std; with seeds,
            of the per-case means over seeds), plus ``"seed_means"`` (each seed's
            mean over the same cases as ``"mean"``: those finite in every seed, so
            that a seed that missed a hard case is not averaged over easier ones),
            ``"seed_mean"``, ``"seed_std"`` (sample std, None with one seed),
            ``"nan_values"`` (NaN values over all seeds and cases).
        """
        values = self.values(metric, penalty)
        out = stats(values.values())
        kept = [c for c, v in values.items() if math.isfinite(v)]
        tables = self.member_values(metric, penalty)
        seed_means = [stats(t[c] for c in kept)["mean"] for t in tables]
        finite_means = [v for v in seed_means if v is not None]
        out["seed_means"] = seed_means
        out["seed_mean"] = float(np.mean(finite_means)) if finite_means else None
        out["seed_std"] = float(np.std(finite_means, ddof=1)) if len(finite_means) > 1 else None
        out["nan_values"] = int(sum(not math.isfinite(v) for t in tables for v in t.values()))
        out["missed"] = len(self.misses(metric))
        return out


def load_group(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], name: str | None = None
) -> Group:
    """A :class:`Group` from an evaluation folder, a folder of seed folders, or a list of folders.

    Args:
        source: evaluation (or run) folder; a folder whose sub-folders are
            evaluation (or run) folders, one per seed; or a list of evaluation
            folders forming one group.
        name: label (default: the folder's name, its parent's for an ``eval`` folder).

    Raises:
        CanetError: a folder is missing or holds no evaluation at all, a list is
            empty, or the seed runs' ``config.yaml`` name different methods.
    """
    ignored: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        root = _existing_folder(source)
        if find_evaluation(root) is not None:
            members, member_names = [load_evaluation(root)], [_default_name(root)]
        else:
            members, member_names = [], []
            for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if find_evaluation(sub) is None:
                    ignored.append(sub.name)
                    continue
                members.append(load_evaluation(sub))
                member_names.append(sub.name)
            if not members:
                raise CanetError(
                    f"{root} holds no evaluation: no metrics.csv + summary.json in it, in {root / 'eval'} "
                    "or in its sub-folders (one per seed)"
                )
        group_path = root
    else:
        folders = [Path(p) for p in source]
        if not folders:
            raise CanetError("a group needs at least one evaluation folder")
        members = [load_evaluation(p) for p in folders]
        member_names = [str(p) for p in folders]
        group_path = folders[0]
    resolved = [m.path.resolve() for m in members]
    if len(set(resolved)) != len(resolved):
        raise CanetError(f"group {group_path} lists the same evaluation twice")
    return Group(
        name=name or _default_name(group_path), path=group_path, members=members,
        member_names=member_names, ignored=ignored,
    )


def _check_members(group: Group) -> None:
    """Refuse seeds of different methods; note other differences between seeds."""
    if not group.members:
        raise CanetError(f"group {group.name!r} holds no evaluation")
    if not group.cases:
        raise CanetError(f"the seed evaluations of {group.path} share no case id")
    if group.n_seeds < 2:
        return
    configs = [_run_config(m) for m in group.members]
    if all(c is not None for c in configs):
        first = configs[0] or {}
        methods = {str(c.get("method")) for c in configs if c is not None}
        if len(methods) > 1:
            raise CanetError(
                f"the seed folders of {group.path} are runs of different methods ({', '.join(sorted(methods))}); "
                "a group holds the seeds of one config; pass each method's folder as its own argument"
            )
        differing: list[str] = []
        for c in configs[1:]:
            if c is None:
                continue
            for key in sorted(set(first) | set(c)):
                if key not in SEED_FREE_KEYS and first.get(key) != c.get(key) and key not in differing:
                    differing.append(key)
        if differing:
            group.notes.append(f"its seed runs' configs differ in {', '.join(differing)}")
    for key in SETTING_KEYS:
        if key == "checkpoint":
            continue  # one per seed
        seen = {json.dumps(m.summary.get(key)) for m in group.members}
        if len(seen) > 1:
            group.notes.append(f"its seeds were evaluated with different {key} ({', '.join(sorted(seen))})")
    iterations = [m.summary.get("checkpoint_iteration") for m in group.members]
    if len({json.dumps(i) for i in iterations if i is not None}) > 1:
        shown = ", ".join(f"{n} {i}" for n, i in zip(group.member_names, iterations) if i is not None)
        group.notes.append(f"its seeds' checkpoints are of different training iterations ({shown})")
    incomplete = group.incomplete_cases
    if incomplete:
        named = "; ".join(f"{c} (not in {', '.join(m)})" for c, m in incomplete.items())
        group.notes.append(
            f"{len(incomplete)} case(s) not in every seed, left out of the group: {named}"
        )


# --------------------------------------------------------------------------- comparing


@dataclass
class PairResult:
    """The comparison of one group with the reference, per metric."""

    reference: str
    other: str
    only_in_reference: list[str]
    only_in_other: list[str]
    metrics: dict[str, PairedStatistics]
    seed_std_reference: dict[str, float | None]
    seed_std_other: dict[str, float | None]
    missed_reference: dict[str, list[str]] = field(default_factory=dict)
    missed_other: dict[str, list[str]] = field(default_factory=dict)

    def spread_ratio(self, metric: str) -> float | None:
        """``|mean difference| / largest seed std`` of the two groups (None without seeds)."""
        stds = [s for s in (self.seed_std_reference[metric], self.seed_std_other[metric]) if s is not None]
        diff = self.metrics[metric].mean_difference
        if not stds or not math.isfinite(diff):
            return None
        spread = round(max(stds), TIE_DECIMALS)  # float noise of equal seeds is no spread
        if spread == 0.0:
            return math.inf if diff != 0.0 else None
        return abs(diff) / spread


@dataclass
class Comparison:
    """Result of :func:`compare_groups` (see the module docstring)."""

    groups: list[Group]
    reference: str
    metrics: list[str]
    pairs: list[PairResult]
    group_stats: dict[str, dict[str, dict[str, Any]]]
    distance_unit: str | None
    resamples: int
    seed: int
    confidence: float
    notes: list[str] = field(default_factory=list)
    distance_penalty: str | float | None = None

    @property
    def has_seeds(self) -> bool:
        """Whether any group has more than one seed."""
        return any(g.n_seeds > 1 for g in self.groups)

    # ----------------------------------------------------------------- tables

    def _scale(self, metric: str) -> tuple[float, str]:
        if higher_is_better(metric):  # dice, jaccard (and their per-class columns): points
            return 100.0, f"{metric} %"
        unit = self.distance_unit or "unit?"
        return 1.0, f"{metric} ({unit})"

    def tables(self) -> list[dict[str, Any]]:
        """The tables as ``[{"kind", "title", "header", "rows"}]`` of strings (Markdown and HTML use them).

        ``kind`` is ``"groups"`` (mean ± std over cases), ``"seeds"`` (mean ± std of
        the seeds' means; only when a group has several seeds) or ``"pairs"``.
        """
        out: list[dict[str, Any]] = []
        header = ["group", "seeds", "cases", *[self._scale(m)[1] for m in self.metrics]]
        rows = []
        for g in self.groups:
            cells = [g.name, str(g.n_seeds), str(len(g.cases))]
            for m in self.metrics:
                st = self.group_stats[g.name][m]
                scale = self._scale(m)[0]
                text = _pm(st["mean"], st["std"], scale)
                if st["nan"]:
                    text += f" ({st['nan']} NaN)"
                cells.append(text)
            rows.append(cells)
        out.append({
            "kind": "groups",
            "title": "Groups: mean ± std over cases" + (" (with seeds: of each case's mean over the seeds)" if self.has_seeds else "")
            + ("" if self.distance_penalty is None or not any(m.startswith(DISTANCE_METRICS) for m in self.metrics)
               else f"; a missed structure's HD95/ASD counted at {_penalty_text(self.distance_penalty)}"),
            "header": header, "rows": rows,
        })
        if self.has_seeds:
            rows = []
            for g in self.groups:
                cells = [g.name, str(g.n_seeds), ", ".join(g.member_names)]
                for m in self.metrics:
                    st = self.group_stats[g.name][m]
                    text = _pm(st["seed_mean"], st["seed_std"], self._scale(m)[0])
                    if st["nan"]:
                        text += f" ({st['nan']} NaN case{'s' if st['nan'] > 1 else ''} left out)"
                    cells.append(text)
                rows.append(cells)
            out.append({
                "kind": "seeds",
                "title": "Seeds: mean ± std (ddof 1) of the seeds' means",
                "header": ["group", "seeds", "members", *[self._scale(m)[1] for m in self.metrics]],
                "rows": rows,
            })
        if self.pairs:
            pct = f"{self.confidence * 100:g} %"
            header = ["reference", "other", "metric", "cases", "reference mean", "other mean",
                      "difference", f"{pct} CI", "p (Wilcoxon)", "other better / worse / tied", "left out"]
            if self.has_seeds:
                header += ["seed std ref / other", "abs(difference) / seed std"]
            rows = []
            for pair in self.pairs:
                for m in self.metrics:
                    st = pair.metrics[m]
                    scale, label = self._scale(m)
                    left = len(pair.only_in_reference) + len(pair.only_in_other)
                    nan_cases = set(st.nan_in_reference) | set(st.nan_in_other)
                    nan = len(nan_cases)
                    missed_cases = set(pair.missed_reference.get(m, [])) | set(pair.missed_other.get(m, []))
                    if self.distance_penalty is not None:  # a missed case left out for the other side's NaN
                        missed_cases -= nan_cases          # was not counted at the penalty
                    missed = len(missed_cases)
                    left_out = f"{left} missing, {nan} NaN"
                    if missed and self.distance_penalty is None:
                        left_out += f" ({missed} missed structure{'s' if missed > 1 else ''})"
                    elif missed:
                        left_out += f"; {missed} missed, counted at the penalty"
                    cells = [
                        pair.reference, pair.other, label, str(st.n), _num(st.mean_reference, scale),
                        _num(st.mean_other, scale), _num(st.mean_difference, scale, signed=True),
                        "n/a" if st.n == 0 else
                        f"[{_num(st.ci_low, scale, signed=True)}, {_num(st.ci_high, scale, signed=True)}]",
                        _p(st.p_value), f"{st.better} / {st.worse} / {st.tied}",
                        left_out,
                    ]
                    if self.has_seeds:
                        sr, so = pair.seed_std_reference[m], pair.seed_std_other[m]
                        ratio = pair.spread_ratio(m)
                        cells += [f"{_num(sr, scale)} / {_num(so, scale)}", _ratio(ratio)]
                    rows.append(cells)
            out.append({
                "kind": "pairs",
                "title": (
                    f"Paired differences (other - reference) on shared cases: {pct} percentile bootstrap CI "
                    f"({self.resamples} resamples, seed {self.seed}), two-sided Wilcoxon signed-rank p"
                ),
                "header": header, "rows": rows,
            })
        return out

    def all_notes(self) -> list[str]:
        """Every remark: ignored folders, left-out cases (named), settings that differ."""
        notes: list[str] = []
        for g in self.groups:
            if g.ignored:
                notes.append(f"{g.name}: sub-folders without an evaluation, ignored: {', '.join(g.ignored)}")
            notes.extend(g.named_notes())
        for pair in self.pairs:
            if pair.only_in_reference:
                notes.append(f"{pair.other} vs {pair.reference}: {len(pair.only_in_reference)} case(s) only in "
                             f"{pair.reference}, left out: {', '.join(pair.only_in_reference)}")
            if pair.only_in_other:
                notes.append(f"{pair.other} vs {pair.reference}: {len(pair.only_in_other)} case(s) only in "
                             f"{pair.other}, left out: {', '.join(pair.only_in_other)}")
            for m, st in pair.metrics.items():
                for side, cases in ((pair.reference, st.nan_in_reference), (pair.other, st.nan_in_other)):
                    if cases:
                        notes.append(f"{pair.other} vs {pair.reference}, {m}: {len(cases)} case(s) NaN in {side}, "
                                     f"left out: {', '.join(cases)}")
                for side, cases in ((pair.reference, pair.missed_reference.get(m, [])),
                                    (pair.other, pair.missed_other.get(m, []))):
                    if not cases:
                        continue
                    if self.distance_penalty is None:
                        notes.append(
                            f"{pair.other} vs {pair.reference}, {m}: {len(cases)} missed structure(s) in {side} "
                            f"(one mask empty: Dice 0, {m} NaN) dropped from the paired test, which favours the "
                            f"method that missed: {', '.join(cases)}; --distance-penalty diagonal counts them"
                        )
                    else:
                        notes.append(
                            f"{pair.other} vs {pair.reference}, {m}: {len(cases)} missed structure(s) in {side} "
                            f"counted at {_penalty_text(self.distance_penalty)}: {', '.join(cases)}"
                        )
                if st.n == 0:
                    notes.append(f"{pair.other} vs {pair.reference}, {m}: no shared case with finite values")
        notes.extend(self.notes)
        return notes

    def markdown(self, kinds: Sequence[str] | None = None) -> str:
        """The tables (all, or those whose ``kind`` is in ``kinds``) and the notes as Markdown."""
        parts: list[str] = []
        for table in self.tables():
            if kinds is not None and table["kind"] not in kinds:
                continue
            parts.append(f"**{table['title']}**\n")
            parts.append("| " + " | ".join(_cell(h) for h in table["header"]) + " |")
            parts.append("|" + "---|" * len(table["header"]))
            parts.extend("| " + " | ".join(_cell(c) for c in r) + " |" for r in table["rows"])
            parts.append("")
        notes = self.all_notes()
        if notes:
            parts.append("Notes:\n")
            parts.extend(f"- {n}" for n in notes)
            parts.append("")
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (raw metric units; NaN and infinity as None)."""
        data = {
            "reference": self.reference,
            "metrics": self.metrics,
            "distance_unit": self.distance_unit,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "confidence": self.confidence},
            "distance_penalty": self.distance_penalty,
            "std_ddof": {"cases": 0, "seeds": 1},
            "groups": [
                {
                    "name": g.name, "path": str(g.path), "n_seeds": g.n_seeds,
                    "members": [str(m.path) for m in g.members], "member_names": g.member_names,
                    "cases": len(g.cases), "ignored": g.ignored,
                    "incomplete_cases": g.incomplete_cases,
                    **{key: sorted({str(m.summary[key]) for m in g.members if m.summary.get(key) is not None})
                       for key in (*SOURCE_KEYS, "split")},
                    "metrics": self.group_stats[g.name],
                }
                for g in self.groups
            ],
            "pairs": [
                {
                    "reference": p.reference, "other": p.other,
                    "only_in_reference": p.only_in_reference, "only_in_other": p.only_in_other,
                    "missed_reference": p.missed_reference, "missed_other": p.missed_other,
                    "metrics": {
                        m: {**st.to_dict(), "seed_std_reference": p.seed_std_reference[m],
                            "seed_std_other": p.seed_std_other[m], "diff_over_seed_std": p.spread_ratio(m)}
                        for m, st in p.metrics.items()
                    },
                }
                for p in self.pairs
            ],
            "notes": self.all_notes(),
            "tables": self.tables(),
        }
        return _json_safe(data)

    def write(self, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``compare.md`` and ``compare.json`` atomically into ``out_dir``; returns both paths."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise CanetError(f"--out must be a folder, got the file {out}")
        md, js = out / "compare.md", out / "compare.json"
        atomic_write_text(md, self.markdown())
        atomic_write_text(js, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return md, js


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return "inf (seed std 0)" if math.isinf(ratio) else f"{ratio:.2f}"


def _num(value: float | None, scale: float = 1.0, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    value = value + 0.0 if round(value * scale, 2) != 0 else 0.0  # no "-0.00"
    return f"{value * scale:+.2f}" if signed else f"{value * scale:.2f}"


def _pm(mean: float | None, std: float | None, scale: float) -> str:
    if mean is None:
        return "n/a"
    return f"{mean * scale:.2f}" + ("" if std is None else f" ± {std * scale:.2f}")


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def compare_groups(
    groups: Sequence[Group],
    metrics: Sequence[str] | None = None,
    reference: str | int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    distance_penalty: str | float | None = None,
) -> Comparison:
    """Summarise ``groups`` and compare each with the reference.

    Args:
        groups: at least one group; names must be unique.
        metrics: metric columns to use (default dice, jaccard, hd95, asd).
        reference: name or index of the reference group (default the first).
        resamples / seed / confidence: bootstrap settings (see
            :func:`canet.metrics.paired.bootstrap_mean_ci`).
        distance_penalty: what HD95/ASD of a missed structure (one mask empty:
            Dice 0, distance NaN) count as: None (default) leaves them out of
            the paired test (counted and named in the table and notes), a
            positive number (in the distance unit) or ``"diagonal"`` (the
            volume's diagonal, ``metrics.csv``'s ``diagonal`` column: no
            surface distance can be longer) counts them, so that a complete
            failure weighs against the method.

    Raises:
        CanetError: no group, duplicate names, unknown reference or metric, a
            metric some evaluation lacks, distance metrics in different units, or
            two groups with no case in common.
    """
    groups = list(groups)
    if not groups:
        raise CanetError("nothing to compare: give at least one evaluation folder")
    names = [g.name for g in groups]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CanetError(f"two groups are both named {dupes[0]!r}; give folders with different names")
    metrics = list(dict.fromkeys(metrics)) if metrics else list(METRICS)  # --metric dice dice: once
    for m in metrics:
        higher_is_better(m)  # unknown metric -> one clear line
    if int(resamples) != resamples or resamples < 1:
        raise CanetError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise CanetError(f"confidence must be in (0, 1), got {confidence!r}")
    penalty = check_distance_penalty(distance_penalty)
    ref_index = _reference_index(groups, reference)
    unit = _distance_unit(groups, metrics)
    group_stats = {g.name: {m: g.statistics(m, penalty) for m in metrics} for g in groups}
    ref = groups[ref_index]
    pairs: list[PairResult] = []
    for i, other in enumerate(groups):
        if i == ref_index:
            continue
        shared, only_ref, only_other = match_cases(dict.fromkeys(ref.cases), dict.fromkeys(other.cases))
        if not shared:
            raise CanetError(
                f"{other.name} ({other.path}) and {ref.name} ({ref.path}) share no case id "
                f"(e.g. {other.cases[0]!r} against {ref.cases[0]!r})"
            )
        per_metric = {
            m: paired_statistics(ref.values(m, penalty), other.values(m, penalty), m, resamples=resamples,
                                 confidence=confidence, seed=seed)
            for m in metrics
        }
        shared_set = set(shared)
        pairs.append(PairResult(
            reference=ref.name, other=other.name, only_in_reference=only_ref, only_in_other=only_other,
            metrics=per_metric,
            seed_std_reference={m: group_stats[ref.name][m]["seed_std"] for m in metrics},
            seed_std_other={m: group_stats[other.name][m]["seed_std"] for m in metrics},
            missed_reference={m: [c for c in ref.misses(m) if c in shared_set] for m in metrics},
            missed_other={m: [c for c in other.misses(m) if c in shared_set] for m in metrics},
        ))
    comparison = Comparison(
        groups=groups, reference=ref.name, metrics=metrics, pairs=pairs, group_stats=group_stats,
        distance_unit=unit, resamples=int(resamples), seed=int(seed), confidence=float(confidence),
        distance_penalty=penalty,
    )
    comparison.notes.extend(_setting_notes(groups))
    unit_note = _unrecorded_unit_note(groups, metrics, unit)
    if unit_note is not None:
        comparison.notes.append(unit_note)
    for pair in pairs:
        # metrics without a shared finite case have a note of their own
        fewest = min((pair.metrics[m].n for m in metrics if pair.metrics[m].n > 0), default=0)
        if 0 < fewest < FEW_CASES:
            comparison.notes.append(
                f"{pair.other} vs {pair.reference}: only {fewest} paired case(s); the bootstrap CI and the "
                "p-value rest on too few cases to say much"
            )
    if len(groups) > 2:
        comparison.notes.append(
            f"{len(pairs)} comparisons with {ref.name}: the p-values are not corrected for multiple comparisons"
        )
    if comparison.has_seeds:
        comparison.notes.append(
            "the CI and p-value cover the choice of test cases, not of training seed; "
            "compare the difference with the seed std"
        )
    return comparison


def check_distance_penalty(value: str | float | None) -> str | float | None:
    """``None``, ``"diagonal"`` or a positive finite number (from a number or its text).

    Raises:
        CanetError: anything else, quoted.
    """
    if value is None or value == "diagonal":
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise CanetError(f"distance penalty must be 'diagonal' or a positive number, got {value!r}")
    return number


def _penalty_text(penalty: str | float) -> str:
    return "the volume's diagonal" if penalty == "diagonal" else f"{penalty:g}"


def _reference_index(groups: Sequence[Group], reference: str | int | None) -> int:
    if reference is None:
        return 0
    if isinstance(reference, int):
        if not 0 <= reference < len(groups):
            raise CanetError(f"reference index {reference} is out of range (0..{len(groups) - 1})")
        return reference
    for i, g in enumerate(groups):
        if reference in (g.name, str(g.path)) or Path(reference) == g.path:
            return i
    raise CanetError(f"reference {reference!r} is not one of the groups ({', '.join(g.name for g in groups)})")


def recorded_distance_unit(groups: Sequence[Group], hint: str = "") -> str | None:
    """The one distance unit the groups' evaluations record (``"voxels"``, ``"mm"``), or None
    where none records one.

    Raises:
        CanetError: they record different units, or ``"mixed"`` (``hint`` ends the message).
    """
    known = {u for g in groups for u in g.distance_units if u is not None}
    if "mixed" in known or len(known) > 1:
        where = "; ".join(f"{g.name}: {', '.join(sorted(str(u) for u in g.distance_units))}" for g in groups)
        raise CanetError(f"HD95/ASD are in different units across the evaluations ({where}){hint}")
    return next(iter(known)) if known else None


def _distance_unit(groups: Sequence[Group], metrics: Sequence[str]) -> str | None:
    if any(m.startswith(DISTANCE_METRICS) for m in metrics):
        return recorded_distance_unit(groups, "; compare them in one unit or pass --metric dice jaccard")
    known = {u for g in groups for u in g.distance_units if u is not None}
    return next(iter(known)) if len(known) == 1 else None  # Dice/Jaccard only: units do not matter


def _unrecorded_unit_note(groups: Sequence[Group], metrics: Sequence[str], unit: str | None) -> str | None:
    """A note naming the evaluations that record no distance unit when others record ``unit``
    (their HD95/ASD are then read as in ``unit``, which nothing in them confirms)."""
    if unit is None or not any(m.startswith(DISTANCE_METRICS) for m in metrics):
        return None
    unknown = [str(m.path) for g in groups for m in g.members if m.distance_unit is None]
    if not unknown:
        return None
    return (f"{len(unknown)} evaluation(s) record no distance unit, their HD95/ASD are taken as {unit} "
            f"like the others': {', '.join(unknown)}")


def _source_text(summary: dict[str, Any], key: str) -> str:
    """``summary[key]`` as text; a checkpoint with the training iteration it holds, where recorded
    (``last.pt`` of a run still going holds another one than the finished run's)."""
    text = str(summary.get(key))
    iteration = summary.get("checkpoint_iteration")
    return f"{text} (iteration {iteration})" if key == "checkpoint" and iteration is not None else text


def _sources(group: Group) -> str:
    """What a group scored: its data or ground truth, split and checkpoint(s), as recorded."""
    parts = []
    for key in (*SOURCE_KEYS[:2], "split", "checkpoint"):
        values = sorted({_source_text(m.summary, key) for m in group.members if m.summary.get(key) is not None})
        if values:
            parts.append(f"{key} {', '.join(values)}")
    return "; ".join(parts) if parts else "no data, ground truth or checkpoint recorded"


def _setting_notes(groups: Sequence[Group]) -> list[str]:
    """What each group scored, and the evaluation settings that differ between groups.

    The checkpoints are named in the "scored" notes only (that they differ is what a comparison
    of methods is about); a setting that one group does not record (``canet score`` runs no
    network, so it has no windows or mode) is no difference worth a note, except the data.
    """
    notes = [f"{g.name} scored: {_sources(g)}" for g in groups]
    for key in SETTING_KEYS:
        if key == "checkpoint":
            continue
        raw = [(g.name, g.members[0].summary.get(key)) for g in groups]
        if key not in DATA_KEYS:  # compared among the groups that record it
            raw = [(name, v) for name, v in raw if v is not None]
        per_group = {name: json.dumps(v) for name, v in raw}
        if len(set(per_group.values())) > 1:
            text = f"evaluation {key} differs: " + ", ".join(f"{n}={v}" for n, v in per_group.items())
            if key in DATA_KEYS:
                text += " (the groups scored different data: cases with the same id may be different scans)"
            notes.append(text)
    return notes


def compare(
    sources: Sequence[str | os.PathLike[str] | Sequence[str | os.PathLike[str]]],
    metrics: Sequence[str] | None = None,
    reference: str | int | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
    out_dir: str | os.PathLike[str] | None = None,
    names: Sequence[str] | None = None,
    distance_penalty: str | float | None = None,
) -> Comparison:
    """Load each source as a :class:`Group`, compare them, optionally write the files.

    Args:
        sources: one entry per group (see :func:`load_group`).
        metrics / reference / resamples / seed / confidence: see :func:`compare_groups`.
        out_dir: if given, ``compare.md`` and ``compare.json`` are written there.
        names: labels of the groups (default: folder names).
        distance_penalty: see :func:`compare_groups`.

    Returns:
        The :class:`Comparison`.
    """
    if names is not None and len(names) != len(sources):
        raise CanetError(f"{len(names)} names for {len(sources)} groups")
    groups = [load_group(src, None if names is None else names[i]) for i, src in enumerate(sources)]
    seen: dict[Path, str] = {}
    for g in groups:
        for m in g.members:
            key = m.path.resolve()
            if key in seen:
                raise CanetError(f"the evaluation {m.path} is given twice (in {seen[key]} and {g.path})")
            seen[key] = str(g.path)
    _unique_names(groups, sources)
    comparison = compare_groups(groups, metrics, reference, resamples, seed, confidence, distance_penalty)
    if out_dir is not None:
        comparison.write(out_dir)
    return comparison


def _unique_names(groups: list[Group], sources: Sequence[Any]) -> None:
    """Give groups whose folder names clash their path as typed instead."""
    names = [g.name for g in groups]
    for g, src in zip(groups, sources):
        if names.count(g.name) > 1 and isinstance(src, (str, os.PathLike)):
            g.name = os.path.normpath(str(src))
