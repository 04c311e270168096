"""``canet check-data``, ``canet prepare-la`` and ``canet make-synthetic``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from canet.cli.argtypes import nonnegative_int, output_path, positive_int
from canet.errors import CanetError


def add_parser(sub: Any) -> None:
    """Register the data commands on the ``canet`` sub-parsers ``sub``."""
    p = sub.add_parser(
        "check-data",
        help="check a dataset (LA folder or datalist) and print a summary",
        description=(
            "Decode every case of an LA folder or a datalist and list each problem with its file "
            "(missing or unreadable file, missing image/label, shape mismatch, label values outside "
            "the classes, NaN/inf, empty image). Exit status 0 when clean, 1 otherwise."
        ),
    )
    p.add_argument("data", metavar="ROOT_OR_DATALIST", help="LA folder (with train.list) or datalist (.json/.yaml)")
    p.add_argument("--labeled", type=int, default=None, metavar="N",
                   help="first N training cases labeled (default: all); unlabeled cases' labels are not read")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_check_data)

    p = sub.add_parser(
        "prepare-la",
        help="convert the challenge's raw NRRD cases into the LA h5 layout",
        description=(
            "Convert RAW_DIR/<id>/lgemri.nrrd + laendo.nrrd (255 = atrium; one non-zero value per mask) into "
            "OUT_DIR/2018LA_Seg_Training Set/<id>/mri_norm2.h5: z-score over the whole scan, crop "
            "around the atrium with seeded random margins in x and y (z whole), never smaller than "
            "the patch. Margins and crops are recorded in OUT_DIR/prepare_la.json."
        ),
    )
    p.add_argument("raw_dir", metavar="RAW_DIR", help="folder of <id>/lgemri.nrrd and <id>/laendo.nrrd")
    p.add_argument("out_dir", type=output_path, metavar="OUT_DIR", help="LA folder to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the crop margins (default 0)")
    p.add_argument("--patch-size", nargs=3, type=int, default=[112, 112, 80], metavar=("X", "Y", "Z"),
                   help="smallest crop: the training patch (default 112 112 80)")
    p.add_argument("--margin", nargs=2, type=int, default=[10, 20], metavar=("LOW", "HIGH"),
                   help="margin range in voxels around the atrium in x and y, inclusive (default 10 20)")
    p.add_argument("--train-list", default=None, metavar="FILE", help="ids of the training cases (written as train.list)")
    p.add_argument("--test-list", default=None, metavar="FILE", help="ids of the test cases (written as test.list)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prepare_la)

    p = sub.add_parser(
        "make-synthetic",
        help="write a small synthetic LA-like dataset",
        description=(
            "Write N MR-like volumes with an atrium-like body, vein tubes, bias field and noise, "
            "with their labels, in the LA layout (train.list, test.list, h5 files). Same seed, same files."
        ),
    )
    p.add_argument("out_dir", type=output_path, metavar="OUT_DIR", help="folder to write")
    p.add_argument("--cases", type=positive_int, default=20, metavar="N", help="training cases (default 20)")
    p.add_argument("--test", type=nonnegative_int, default=4, metavar="N", help="test cases (default 4)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--shape", nargs=3, type=int, default=[96, 96, 64], metavar=("X", "Y", "Z"),
                   help="volume shape (default 96 96 64)")
    p.set_defaults(func=_make_synthetic)


def _check_data(args: argparse.Namespace) -> int:
    from canet.data.check import CheckReport, check_dataset

    if args.json and Path(args.json).resolve() == Path(args.data).resolve():
        raise CanetError(f"--json {args.json} is the datalist being checked; name another file for the report")
    try:
        report = check_dataset(args.data, labeled=args.labeled, progress=not args.no_progress)
    except Exception as exc:  # check-data never shows a traceback
        text = str(exc).strip().splitlines()
        report = CheckReport(problems=[f"{args.data}: {text[0] if text else type(exc).__name__}"])
    print(report.format())
    if args.json:
        from canet.io import atomic_write_text

        payload = {"ok": report.ok, "problems": report.problems, "warnings": report.warnings,
                   "summary": report.summary}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()
    return 0 if report.ok else 1


def _prepare_la(args: argparse.Namespace) -> int:
    from canet.data.prepare import prepare_la

    record = prepare_la(
        args.raw_dir, args.out_dir, seed=args.seed, patch_size=tuple(args.patch_size),
        margin=tuple(args.margin), train_list=args.train_list, test_list=args.test_list,
        progress=not args.no_progress,
    )
    n = len(record["cases"])
    print(f"wrote {n} case(s) to {args.out_dir} (record: prepare_la.json, seed {args.seed})")
    if args.train_list is None:
        print("no train.list written: canet opens the folder once it has one (--train-list and --test-list "
              "write the split, e.g. the literature's lists of 80 training and 20 test ids)")
    return 0


def _make_synthetic(args: argparse.Namespace) -> int:
    from canet.data.synthetic import write_synthetic_dataset

    folder = Path(args.out_dir)
    if folder.is_dir() and any(folder.iterdir()):  # its train.list / test.list would be replaced
        raise CanetError(f"{folder} is not empty; make-synthetic writes a new dataset into a new or empty folder")
    out = write_synthetic_dataset(
        args.out_dir, n_train=args.cases, n_test=args.test, seed=args.seed, shape=tuple(args.shape)
    )
    print(f"wrote {args.cases} training + {args.test} test synthetic cases to {out}")
    return 0
