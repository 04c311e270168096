"""One self-contained HTML page to judge a model at a glance.

``write_report(DIR)`` reads what it finds in ``DIR``:

- an evaluation (``summary.json`` + ``metrics.csv`` with a ``case`` column, in
  ``DIR`` or ``DIR/eval``): the summary table and the per-case table, worst
  Dice first;
- training metrics (``metrics.csv`` with an ``iteration`` column, in ``DIR`` or,
  for an evaluation folder, its parent): curves of the losses, the learning
  rate, the validation Dice and any other numeric column (blank cells skipped);
- per-case slices (``report_slices/<case>.npz``, written by ``canet evaluate
  --report`` via :func:`save_case_slices`): three orthogonal slices through the
  centroid of the ground truth with its contour (green) and the prediction's
  (red) over the image, worst cases first.

Images are PNGs drawn with matplotlib's Agg backend and embedded as base64, so
the page is a single file.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from canet.errors import CanetError
from canet.io import atomic_open, atomic_write_text
from canet.report.comparison import write_comparison_report
from canet.report.style import PAGE_CSS

PLANES: tuple[tuple[str, str], ...] = (
    ("axial", "X-Y plane at the centroid's z"),
    ("coronal", "X-Z plane at the centroid's y"),
    ("sagittal", "Y-Z plane at the centroid's x"),
)

__all__ = [
    "load_training_metrics",
    "plot_training_curves",
    "render_case_png",
    "save_case_slices",
    "write_report",
]


# --------------------------------------------------------------------------- slices


def _centroid(gt: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """The point the three slices pass through: the mask's centroid, each coordinate moved to
    the nearest slice that holds some of the mask where the centroid's does not (a structure
    in parts can have its centroid between them)."""
    for mask in (gt, pred):
        m = np.asarray(mask) != 0
        pts = np.argwhere(m)
        if len(pts):
            c = np.round(pts.mean(axis=0)).astype(int)
            point = []
            for axis in range(3):
                held = np.flatnonzero(m.any(axis=tuple(a for a in range(3) if a != axis)))
                point.append(int(held[np.argmin(np.abs(held - c[axis]))]))
            return point[0], point[1], point[2]
    return tuple(int(s // 2) for s in np.shape(gt))  # type: ignore[return-value]


def save_case_slices(
    path: str | os.PathLike[str],
    case_id: str,
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    spacing: tuple[float, ...] | None = None,
    dice: float | None = None,
    axcodes: str | None = None,
) -> Path:
    """Keep the three orthogonal slices the report draws for one case (``.npz``).

    The slices pass through the centroid of ``gt`` (of ``pred`` when ``gt`` is
    empty, the volume's centre when both are); a plane through the centroid that
    holds none of the mask (a structure in parts) moves to the nearest one that does.

    Args:
        path: output ``.npz`` file (written atomically).
        case_id: the case's id.
        image: ``X x Y x Z`` image.
        gt, pred: ``X x Y x Z`` label maps.
        spacing: voxel size per axis (for the aspect ratio); None = isotropic.
        dice: the case's Dice, shown in the title.
    """
    image, gt, pred = np.asarray(image), np.asarray(gt), np.asarray(pred)
    if not image.shape == gt.shape == pred.shape or image.ndim != 3:
        raise CanetError(
            f"report slices need three X x Y x Z arrays of one shape, got {image.shape}, {gt.shape}, {pred.shape}"
        )
    cx, cy, cz = _centroid(gt, pred)
    cuts = {"axial": (slice(None), slice(None), cz), "coronal": (slice(None), cy, slice(None)), "sagittal": (cx, slice(None), slice(None))}
    arrays: dict[str, np.ndarray] = {
        "case": np.asarray(case_id),
        "centroid": np.asarray([cx, cy, cz]),
        "spacing": np.asarray(spacing if spacing is not None else (1.0, 1.0, 1.0), dtype=np.float64),
        "dice": np.asarray(np.nan if dice is None else float(dice)),
    }
    if axcodes:  # the arrays' voxel axes in the world (e.g. "RAS"), to name the planes anatomically
        arrays["axcodes"] = np.asarray(str(axcodes))
    for plane, cut in cuts.items():
        arrays[f"image_{plane}"] = image[cut].astype(np.float32)
        arrays[f"gt_{plane}"] = _label_slice(gt[cut])
        arrays[f"pred_{plane}"] = _label_slice(pred[cut])
    target = Path(path)
    with atomic_open(target, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return target


def _label_slice(labels: np.ndarray) -> np.ndarray:
    """A label slice in the smallest integer type that holds its values (uint8 would turn 256 into 0)."""
    labels = np.asarray(labels)
    if labels.dtype == np.bool_ or labels.size == 0 or (labels.min() >= 0 and labels.max() <= 255):
        return labels.astype(np.uint8)
    return labels.astype(np.int64)


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_ANATOMY = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}


def plane_name(plane: str, axcodes: str = "") -> str:
    """The title of a report slice: ``"axial (x-y)"`` where the volume's orientation names it.

    ``plane`` is the slice's key (``axial`` = the x-y plane of the stored arrays, ``coronal`` = x-z,
    ``sagittal`` = y-z); which anatomical plane that is depends on the voxel order, told by
    ``axcodes`` (e.g. ``"RAS"``, ``"PSR"``). Without it (a file that states no orientation)
    only the array axes are named.
    """
    h_axis, v_axis = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[plane]
    axes = f"{'xyz'[h_axis]}-{'xyz'[v_axis]}"
    normal = 3 - h_axis - v_axis  # the axis the slice is cut across
    if len(axcodes) == 3 and axcodes[normal] in _ANATOMY:
        return f"{_ANATOMY[axcodes[normal]]} ({axes})"
    return f"{axes} plane (orientation not stated)"


def render_case_png(slices: dict[str, np.ndarray] | str | os.PathLike[str]) -> bytes:
    """PNG of one case's three slices with ground-truth (green) and prediction (red) contours.

    Args:
        slices: the dict :func:`save_case_slices` stores, or the ``.npz`` path.
    """
    if not isinstance(slices, dict):
        with np.load(Path(slices), allow_pickle=False) as data:
            slices = {k: data[k] for k in data.files}
    plt = _pyplot()
    from matplotlib.lines import Line2D

    spacing = np.asarray(slices.get("spacing", (1.0, 1.0, 1.0)), dtype=float)
    axes_of = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}
    codes = str(np.asarray(slices["axcodes"])) if "axcodes" in slices else ""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.7), dpi=90)
    for ax, (plane, _) in zip(axes, PLANES):
        img = np.asarray(slices[f"image_{plane}"], dtype=np.float32)
        lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
        h_axis, v_axis = axes_of[plane]
        aspect = float(spacing[v_axis] / spacing[h_axis])
        ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect, interpolation="nearest")
        for key, colour in (("gt", "#00e000"), ("pred", "#ff2020")):
            m = np.asarray(slices[f"{key}_{plane}"])
            if m.any() and min(m.shape) > 1:
                labels = [v for v in np.unique(m) if v != 0]
                # a zero border lets a mask that reaches the slice's edge show a contour there
                xs = np.arange(-1, m.shape[0] + 1)
                ys = np.arange(-1, m.shape[1] + 1)
                for v in labels:
                    padded = np.pad((m == v).astype(float), 1)
                    ax.contour(xs, ys, padded.T, levels=[0.5], colors=colour, linewidths=1.4)
        ax.set_title(plane_name(plane, codes), fontsize=11)
        ax.set_xlim(-0.5, img.shape[0] - 0.5)
        ax.set_ylim(-0.5, img.shape[1] - 0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    dice = float(np.asarray(slices.get("dice", np.nan)))
    centroid = [int(v) for v in np.asarray(slices.get("centroid", [0, 0, 0]))]
    # a case id from a file name that is not UTF-8 holds surrogates, which the figure cannot draw
    case = str(np.asarray(slices.get("case", ""))).encode("utf-8", "backslashreplace").decode("utf-8")
    title = f"{case}   Dice {dice:.4f}" if math.isfinite(dice) else case
    # parse_math off: a case id such as 'a$^$b' is a name, not a formula
    fig.suptitle(f"{title}   slices through ({centroid[0]}, {centroid[1]}, {centroid[2]})", fontsize=12,
                 parse_math=False)
    handles = [Line2D([], [], color="#00e000", lw=2, label="ground truth"), Line2D([], [], color="#ff2020", lw=2, label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=10)
    fig.subplots_adjust(bottom=0.08, top=0.86)
    return _figure_png(fig)


# --------------------------------------------------------------------------- training curves


def load_training_metrics(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numeric columns of a training ``metrics.csv``: ``{column: (iterations, values)}``.

    Blank or non-numeric cells are skipped (a column keeps only its filled rows);
    columns with no numeric value are left out.

    Raises:
        CanetError: the file has no ``iteration`` column.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "iteration" not in reader.fieldnames:
            raise CanetError(f"{path} has no 'iteration' column")
        columns = [c for c in reader.fieldnames if c != "iteration"]
        points: dict[str, list[tuple[float, float]]] = {c: [] for c in columns}
        for row in reader:
            it = _number(row.get("iteration"))
            if it is None:
                continue
            for c in columns:
                v = _number(row.get(c))
                if v is not None:
                    points[c].append((it, v))
    return {
        c: (np.asarray([p[0] for p in pts]), np.asarray([p[1] for p in pts]))
        for c, pts in points.items()
        if pts
    }


def _number(text: str | None) -> float | None:
    if text is None or not str(text).strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _group(column: str) -> str:
    name = column.lower()
    if "loss" in name:
        return "losses"
    if name == "lr" or name.startswith("lr") or name.endswith("lr") or "learning_rate" in name:
        return "learning rate"
    if "dice" in name or name.startswith("val"):
        return "validation"
    return "other"


def plot_training_curves(metrics: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[tuple[str, bytes]]:
    """One PNG per group of columns (losses, learning rate, validation, other; "other" one panel a column)."""
    plt = _pyplot()
    groups: dict[str, list[str]] = {}
    for column in metrics:
        groups.setdefault(_group(column), []).append(column)
    out: list[tuple[str, bytes]] = []
    for group in ("losses", "learning rate", "validation", "other"):
        cols = groups.get(group)
        if not cols:
            continue
        # "other" holds unrelated scales (s/it near 10 beside an adversarial weight near 1e-4):
        # one panel each, or the small ones draw as a flat line at 0
        panels = [[c] for c in cols] if group == "other" else [cols]
        fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 3.8 if len(panels) == 1 else 1.0 + 2.0 * len(panels)),
                                 dpi=90, sharex=True, squeeze=False)
        for ax, panel in zip(axes[:, 0], panels):
            for c in panel:
                x, y = metrics[c]
                ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, lw=1.3, label=c)
            if group == "learning rate" and all(np.all(metrics[c][1] > 0) for c in panel):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        axes[-1, 0].set_xlabel("iteration")
        axes[0, 0].set_title(group)
        out.append((group, _figure_png(fig)))
    return out


# --------------------------------------------------------------------------- page


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _dice_key(row: dict[str, str]) -> tuple[bool, float]:
    """Worst Dice first; a case without a Dice (both masks empty: nothing to miss) last."""
    v = _number(row.get("dice"))
    undefined = v is None or math.isnan(v)
    return undefined, 0.0 if undefined else float(v)  # type: ignore[arg-type]


def write_report(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, title: str | None = None
) -> Path:
    """Write the HTML report for a run folder or an evaluation folder.

    Args:
        path: run folder (``metrics.csv`` with ``iteration``; ``eval/`` inside)
            or evaluation folder (``summary.json``, ``metrics.csv``, ``report_slices/``).
            A folder with only a ``compare.json`` (``canet compare --out``) gets
            the comparison page (:func:`canet.report.write_comparison_report`).
        out: output file, default ``<path>/report.html``.
        title: page title, default the folder name.

    Returns:
        The path written.

    Raises:
        CanetError: the folder is missing or holds neither an evaluation nor training metrics.
    """
    root = Path(path)
    if not root.exists():
        raise CanetError(f"report folder not found: {root}")
    if not root.is_dir():
        raise CanetError(f"{root} is a file; give a run folder or an evaluation folder")
    if out is not None and not str(out).lower().endswith((".html", ".htm")):
        # the report is HTML: -o metrics.csv would write it over the table it is made from
        raise CanetError(f"the report is an HTML page: -o must name a .html file, got {out}")
    eval_dir: Path | None = None
    for cand in (root, root / "eval"):
        if (cand / "summary.json").is_file():
            eval_dir = cand
            break
    train_csv: Path | None = None
    for cand in (root / "metrics.csv", root.parent / "metrics.csv" if eval_dir == root else None):
        if cand is not None and cand.is_file() and "iteration" in _read_header(cand):
            train_csv = cand
            break
    if eval_dir is None and train_csv is None:
        if (root / "compare.json").is_file():  # a `canet compare --out` folder
            return write_comparison_report(root / "compare.json", out if out is not None else root / "report.html")
        raise CanetError(
            f"{root} holds neither an evaluation (summary.json) nor training metrics (metrics.csv with an 'iteration' column)"
        )
    target = Path(out) if out is not None else root / "report.html"
    parts: list[str] = []
    page_title = title or f"canet report: {root.resolve().name}"
    parts.append(f"<h1>{html.escape(page_title)}</h1>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p class="meta">generated {stamp} from {html.escape(str(root))}</p>')

    if eval_dir is not None:
        parts.extend(_evaluation_section(eval_dir))
    if train_csv is not None:
        metrics = load_training_metrics(train_csv)
        parts.append("<h2>Training curves</h2>")
        scored = _scored_iteration(eval_dir)
        trained = max((int(x.max()) for x, _ in metrics.values() if x.size), default=None)
        if scored is not None and trained is not None and trained > scored:
            # a run resumed or extended after its evaluation: its curves go past the weights scored above
            parts.append(
                f'<p class="warning">The metrics above are of the checkpoint of iteration {scored}; the curves '
                f"go on to iteration {trained}. Evaluate the run again to score its newer weights.</p>"
            )
        if metrics:
            parts.append('<div class="curves">')
            for group, png in plot_training_curves(metrics):
                parts.append(_img_tag(png, group))
            parts.append("</div>")
        else:
            parts.append("<p>metrics.csv has no numeric values yet.</p>")
    if eval_dir is not None:
        parts.extend(_cases_section(eval_dir))

    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(page_title)}</title><style>{PAGE_CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    atomic_write_text(target, doc, errors="backslashreplace")  # a path that is not valid UTF-8
    return target


def _scored_iteration(eval_dir: Path | None) -> int | None:
    """The iteration of the checkpoint an evaluation folder scored, where its summary.json records it."""
    if eval_dir is None:
        return None
    try:
        value = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8")).get("checkpoint_iteration")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _evaluation_section(eval_dir: Path) -> list[str]:
    try:
        summary = json.loads((eval_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CanetError(f"cannot read {eval_dir / 'summary.json'}: {exc}") from None
    if not isinstance(summary, dict):
        raise CanetError(f"{eval_dir / 'summary.json'} is not a canet summary (a JSON object)")
    parts = ["<h2>Metrics</h2>"]
    if summary.get("selected_on_scored_split"):
        split = html.escape(str(summary.get("split")))
        parts.append(
            f'<p class="warning"><b>Selected on the scored split:</b> this checkpoint was picked (best '
            f"validation Dice during training) on the <b>{split}</b> split these metrics are computed on, "
            "so they are optimistic.</p>"
        )
    units = html.escape(str(summary.get("distance_unit") or summary.get("spacing") or "unit not recorded"))
    parts.append("<table><tr><th>metric</th><th>mean</th><th>std</th><th>n</th><th>NaN</th></tr>")
    for m in ("dice", "jaccard", "hd95", "asd"):
        st = summary.get(m) or {}
        label = f"{m} ({units})" if m in ("hd95", "asd") else m
        parts.append(
            f"<tr><td>{label}</td><td>{_fmt(st.get('mean'))}</td><td>{_fmt(st.get('std'))}</td>"
            f"<td>{_fmt(st.get('n'))}</td><td>{_fmt(st.get('nan'))}</td></tr>"
        )
    parts.append("</table>")
    multi = int(summary.get("num_classes") or 2) > 2
    if multi:
        parts.extend(_per_class_table(summary, units))
    # for multi-class data the two counts are of classes missed or made up, not of empty masks
    names = {"empty_pred": "cases with a class missed", "empty_gt": "cases with a class not in the ground truth"} \
        if multi else {}
    keys = ("cases", "empty_pred", "empty_gt", "mode", "decision", "overlap", "tta", "lcc", "amp", "patch_size",
            "checkpoint", "checkpoint_iteration", "data", "split", "selected_on", "pred", "gt", "ignore_affine")
    info = {names.get(k, k): summary.get(k) for k in keys if summary.get(k) is not None}
    if info:
        parts.append('<p class="meta">' + " &middot; ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in info.items()) + "</p>")
    notes = [str(w) for w in summary.get("warnings") or [] if w]
    if summary.get("preprocessing_note"):
        notes.insert(0, str(summary["preprocessing_note"]))
    if summary.get("ignore_affine"):
        notes.append("scored with --ignore-affine: predictions taken in stored voxel order, their placement unchecked")
    for note in notes:  # what the command said when it scored the cases
        parts.append(f'<p class="warning">{html.escape(note)}</p>')
    csv_path = eval_dir / "metrics.csv"
    if csv_path.is_file():
        rows = sorted(_read_rows(csv_path), key=_dice_key)
        if rows:
            cols = list(rows[0].keys())
            def head(c: str) -> str:  # distances carry their unit, per class too
                return f"{c} ({units})" if c.split("_")[0] in ("hd95", "asd") else c

            parts.append("<h3>Per case (worst Dice first)</h3><table><tr>"
                         + "".join(f"<th>{html.escape(head(c))}</th>" for c in cols) + "</tr>")
            for row in rows:
                cells = []
                for c in cols:
                    v = _number(row.get(c)) if c != "case" else None
                    text = _fmt(v, 3 if c == "seconds" else 4) if v is not None else html.escape(row.get(c) or "")
                    cells.append(f"<td>{text}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</table>")
    return parts


def _per_class_table(summary: dict[str, Any], units: str) -> list[str]:
    """Per class: mean of each metric over the cases that score it, and the cases where it is in neither mask."""
    per_class = summary.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        return []
    absent = summary.get("absent_classes") or {}
    parts = ["<h3>Per class</h3><table><tr><th>class</th>"
             + "".join(f"<th>{m} ({units})</th>" if m in ("hd95", "asd") else f"<th>{m}</th>"
                       for m in ("dice", "jaccard", "hd95", "asd"))
             + "<th>cases where it is in neither mask</th></tr>"]
    for c, stats in sorted(per_class.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0):
        cells = []
        for m in ("dice", "jaccard", "hd95", "asd"):
            st = (stats or {}).get(m) or {}
            nan = f" ({st.get('nan')} NaN)" if st.get("nan") else ""
            cells.append(f"<td>{_fmt(st.get('mean'))} &plusmn; {_fmt(st.get('std'))}{nan}</td>")
        parts.append(f"<tr><td>{html.escape(str(c))}</td>{''.join(cells)}<td>{_fmt(absent.get(str(c), 0))}</td></tr>")
    parts.append("</table>")
    return parts


def _cases_section(eval_dir: Path) -> list[str]:
    slice_dir = eval_dir / "report_slices"
    files = sorted(slice_dir.glob("*.npz")) if slice_dir.is_dir() else []
    if not files:
        return []
    cases = []
    for f in files:
        with np.load(f, allow_pickle=False) as data:
            dice = float(np.asarray(data["dice"])) if "dice" in data.files else math.nan
            # the case id it was saved for (the file name is a cleaned-up form of it)
            case = str(np.asarray(data["case"])) if "case" in data.files else f.stem
        cases.append((not math.isfinite(dice), dice if math.isfinite(dice) else 0.0, f, case))
    cases.sort(key=lambda t: (t[0], t[1], t[2].name))  # no Dice (both masks empty) last
    parts = ["<h2>Cases (worst Dice first)</h2>", '<p class="meta">green: ground truth, red: prediction</p>']
    for _, _, f, case in cases:
        parts.append(f'<div class="case">{_img_tag(render_case_png(f), case)}</div>')
    return parts
