"""``canet list-models`` and ``canet import-checkpoint``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the model commands on the ``canet`` sub-parsers ``sub``."""
    p = sub.add_parser("list-models", help="list the registered networks")
    p.set_defaults(func=_list_models)

    p = sub.add_parser(
        "import-checkpoint",
        help="convert a checkpoint of the authors' CA-Net code into a canet checkpoint",
        description=(
            "Convert a state dict saved by the original CA-Net code (Trans-V generator) into a "
            "canet checkpoint that `canet.load_model` and the other commands read."
        ),
    )
    p.add_argument("src", metavar="SRC", help="original state dict (.pth)")
    p.add_argument("dst", metavar="DST", help="canet checkpoint to write (.pt)")
    p.add_argument(
        "--patch-size",
        nargs=3,
        type=int,
        metavar=("X", "Y", "Z"),
        default=None,
        help="training patch of SRC; needed only if its position embedding does not have "
        "the original 245 tokens (112 112 80)",
    )
    p.set_defaults(func=_import_checkpoint)


def _list_models(args: argparse.Namespace) -> int:
    from canet.models import list_models

    for name in list_models():
        print(name)
    return 0


def _import_checkpoint(args: argparse.Namespace) -> int:
    from canet.evaluation.notes import print_warning
    from canet.models.original import import_checkpoint

    spec = import_checkpoint(args.src, args.dst, patch_size=args.patch_size)
    for line in spec["warnings"]:
        print_warning(line)
    kwargs = ", ".join(f"{k}={v}" for k, v in spec["kwargs"].items())
    print(f"wrote {args.dst}: model {spec['name']}({kwargs}), {spec['parameters']:,} parameters")
    return 0
