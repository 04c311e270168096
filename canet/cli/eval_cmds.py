"""``canet evaluate``, ``canet predict``, ``canet score`` and ``canet report``.

Thin parsers over :mod:`canet.evaluation` and :mod:`canet.report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canet.cli.argtypes import output_path, positive_int
from canet.inferers.settings import AMP_CHOICES, DECISIONS, InferenceSettings
from canet.inferers.sliding_window import MODES, WEIGHTINGS


def _overlap(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"overlap must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"overlap must be in [0, 1), got {text!r}")
    return value


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="fast",
                   help="sliding-window protocol: 'reference' = the literature's (stride 18/18/4), "
                        "'fast' = fewer windows, weighted, batched (default)")
    p.add_argument("--overlap", type=_overlap, default=0.5, help="fast-mode window overlap in [0, 1) (default 0.5)")
    p.add_argument("--weighting", choices=WEIGHTINGS, default="gaussian",
                   help="fast-mode weighting of each window's voxels (default gaussian)")
    p.add_argument("--sw-batch-size", type=positive_int, default=4, help="windows per forward pass (default 4)")
    p.add_argument("--tta", action="store_true", help="average over the 8 flips of the spatial axes")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--lcc", dest="lcc", action="store_const", const=True, default=None,
                       help="keep only the largest connected component of each class (default: on for "
                            "the LA layout, a datalist's postprocess.lcc, the checkpoint's record for predict)")
    group.add_argument("--no-lcc", dest="lcc", action="store_const", const=False,
                       help="do not keep only the largest connected component")
    p.add_argument("--device", default="auto",
                   help="device the network runs on: auto (default: CUDA if available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--amp", choices=AMP_CHOICES, default="none",
                   help="autocast of the network: none (default, fp32 in both modes) or bf16 (CUDA only); "
                        "recorded in evaluate's summary.json")
    p.add_argument("--decision", choices=DECISIONS, default="probability",
                   help="one-channel networks: 'probability' (default: average the windows' sigmoid "
                        "probabilities, keep > 0.5) or 'relu' (the authors' CA-Net test rule, reference mode "
                        "only: average max(logit, 0), keep > 0.5); recorded in evaluate's summary.json")
    p.add_argument("--sums-on-cpu", action="store_true",
                   help="keep the sliding-window sums in CPU memory (default: on the network's device, "
                        "copied back once per volume; for volumes too large for GPU memory)")


def _settings(args: argparse.Namespace) -> InferenceSettings:
    """The :class:`InferenceSettings` the inference options name."""
    return InferenceSettings(
        mode=args.mode, overlap=args.overlap, weighting=args.weighting, sw_batch_size=args.sw_batch_size,
        tta=args.tta, lcc=args.lcc, device=args.device, amp=args.amp, sums_on_cpu=args.sums_on_cpu,
        decision=args.decision,
    )


def _print_table(summary: dict[str, Any], out: Path) -> None:
    print(summary["table"])
    print(f"wrote {out / 'metrics.csv'} and {out / 'summary.json'}")


def _run_evaluate(args: argparse.Namespace) -> int:
    from canet.evaluation import evaluate

    summary = evaluate(
        args.checkpoint, args.data, split=args.split, settings=_settings(args), out_dir=args.out,
        save_predictions=args.save_predictions, report=args.report, spacing=args.spacing,
        max_cases=args.max_cases, progress=not args.quiet, resume=args.resume,
    )
    _print_table(summary, Path(args.out))
    if args.report:
        print(f"wrote {Path(args.out) / 'report.html'}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from canet.evaluation import predict_files

    written = predict_files(
        args.checkpoint, args.inputs, args.output, probabilities=args.probabilities,
        settings=_settings(args), progress=not args.quiet, resume=args.resume,
    )
    print(f"wrote {len(written)} mask(s) to {args.output}")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from canet.evaluation import score

    summary = score(
        args.pred, args.gt, args.out, spacing_from=args.spacing_from, voxels=args.voxels,
        num_classes=args.num_classes, progress=not args.quiet, ignore_affine=args.ignore_affine,
    )
    _print_table(summary, Path(args.out))
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from canet.report import write_report

    path = write_report(args.folder, out=args.output)
    print(f"wrote {path}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``evaluate``, ``predict``, ``score`` and ``report``."""
    p = subparsers.add_parser(
        "evaluate", help="score a checkpoint on a dataset split (metrics.csv, summary.json)",
        description="Predict every case of a split with sliding windows and score it "
                    "(Dice, Jaccard, HD95, ASD; medpy's definitions).",
    )
    p.add_argument("checkpoint", help="canet checkpoint (.pt)")
    p.add_argument("--data", required=True, help="LA root folder or datalist")
    p.add_argument("--split", default="test", choices=("test", "validation", "labeled", "unlabeled", "train"),
                   help="which cases (default test); labeled/unlabeled: as the checkpoint's run split its "
                        "training cases (its data.labeled), when --data is the data it was trained on")
    p.add_argument("--out", type=output_path, required=True, help="output folder")
    p.add_argument("--save-predictions", action="store_true", help="write <case>_pred.nii.gz per case")
    p.add_argument("--report", action="store_true", help="also write report.html (keeps report_slices/)")
    p.add_argument("--spacing", choices=("auto", "voxels", "mm"), default="auto",
                   help="distance units (default auto: voxels for LA, as published, mm otherwise); mm is refused "
                        "for the LA .h5 volumes, which state no voxel size")
    p.add_argument("--max-cases", type=positive_int, default=None, help="evaluate only the first N cases")
    p.add_argument("--resume", action="store_true",
                   help="keep the cases a killed evaluation into --out already scored (same settings only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_inference_options(p)
    p.set_defaults(func=_run_evaluate)

    p = subparsers.add_parser(
        "predict", help="segment NIfTI/NRRD/HDF5 volumes with a checkpoint",
        description="Segment NIfTI, NRRD or HDF5 volumes (files or folders); writes <name>_pred.nii.gz "
                    "masks with each input's affine and voxel order.",
    )
    p.add_argument("checkpoint", help="canet checkpoint (.pt)")
    p.add_argument("inputs", nargs="+", help="NIfTI/NRRD/HDF5 files or folders of them")
    p.add_argument("-o", "--output", type=output_path, required=True, help="output folder")
    p.add_argument("--probabilities", action="store_true", help="also write <name>_prob.nii.gz: the foreground probability (K-channel map for multi-class; with --decision relu the mean ReLU(logit) that rule thresholds at 0.5)")
    p.add_argument("--resume", action="store_true",
                   help="keep the masks a killed run with the same checkpoint and settings wrote into -o "
                        "(its predict.json says which); segment the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_inference_options(p)
    p.set_defaults(func=_run_predict)

    p = subparsers.add_parser(
        "score", help="score segmentations made elsewhere against ground truths",
        description="Score prediction files against ground truths: two folders with matching "
                    "names, or one folder of <case>_pred / <case>_gt pairs.",
    )
    p.add_argument("pred", help="folder of predictions (or of <case>_pred/<case>_gt pairs)")
    p.add_argument("gt", nargs="?", default=None, help="folder of ground truths with matching names")
    p.add_argument("--out", type=output_path, required=True, help="output folder")
    p.add_argument("--spacing-from", choices=("gt", "pred"), default="gt",
                   help="whose header gives the voxel spacing (default gt)")
    p.add_argument("--voxels", action="store_true", help="distances in voxels instead of mm")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classes including background (default: 2 when the ground truths hold one "
                        "object value such as 1 or 255, else the largest ground-truth label + 1)")
    p.add_argument("--ignore-affine", action="store_true",
                   help="score pairs whose headers place them differently, in stored voxel order")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_score)

    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report of a run or evaluation folder",
        description="Write report.html: metrics table, training curves and per-case slices.",
    )
    p.add_argument("folder", help="run folder or evaluation folder")
    p.add_argument("-o", "--output", type=output_path, default=None, help="output file (default FOLDER/report.html)")
    p.set_defaults(func=_run_report)
