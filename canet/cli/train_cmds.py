"""``canet train``, ``canet demo`` and ``canet configs``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from canet.cli.argtypes import output_path
from canet.errors import ConfigError


def add_parser(sub: Any) -> None:
    """Register ``train``, ``demo`` and ``configs`` on the ``canet`` sub-parsers ``sub``."""
    p = sub.add_parser(
        "train",
        help="train CA-Net or a baseline from a YAML config (or resume a run)",
        description=(
            "Train a model from a packaged config (la_canet_16 is the paper's recipe; `canet configs` "
            "lists them) or a YAML file, or continue a run with --resume RUN_DIR. Config values are overridden by the flags "
            "below and by --set key=value (dotted keys, YAML values)."
        ),
    )
    p.add_argument(
        "--config", metavar="NAME_OR_YAML", help="packaged config name (see `canet configs`) or a YAML file"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from checkpoints/last.pt")
    p.add_argument("--data", metavar="ROOT_OR_DATALIST", help="LA root folder or datalist (data.root)")
    p.add_argument("--out", type=output_path, metavar="RUN_DIR", help="run folder (default runs/<config name>_<time>)")
    p.add_argument(
        "--iterations", type=int, metavar="N", help="training iterations (with --resume: the new total)"
    )
    p.add_argument(
        "--patch-size", nargs=3, type=int, metavar=("X", "Y", "Z"), help="training patch (data.patch_size)"
    )
    p.add_argument("--labeled", type=int, metavar="N", help="labeled training cases (data.labeled)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default: the config's seed, 1337 in the packaged ones)")
    p.add_argument("--device", metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (default: the config's train.device, auto in the packaged ones)")
    p.add_argument("--num-workers", type=int, metavar="N", help="loader workers (default: the config's data.num_workers)")
    p.add_argument(
        "--skip-data-check", action="store_true",
        help="do not check every case before training (data.check: false), for trusted data",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="fast GPU settings (train.profile=fast: bf16 autocast, channels_last_3d, cuDNN benchmark, "
        "deferred loss checks, more loader workers); without it the paper's exact fp32 semantics",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optimizer.lr=0.02 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar; log lines only")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "demo",
        help="train CA-Net on a synthetic dataset on the CPU in minutes and evaluate it",
        description=(
            "Make a synthetic left-atrium dataset (if absent), train CA-Net semi-supervised on it "
            "(4 labeled + 16 unlabeled cases), evaluate on 4 held-out cases, and print the metrics "
            "beside those of the untrained network."
        ),
    )
    p.add_argument("--out", type=output_path, metavar="DIR", default="runs/demo", help="demo folder (default runs/demo)")
    p.add_argument("--iterations", type=int, metavar="N", help="training iterations (default: the demo config's)")
    p.add_argument("--quick", action="store_true", help="a short smoke run: a fifth of the iterations, at least 10 (at most all of them)")
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu (default), cuda or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar; log lines only")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "configs",
        help="list the packaged training configs (names for --config) with their descriptions",
        description="List the training configs installed with canet; pass a name to `canet train --config`.",
    )
    p.add_argument("--paths", action="store_true", help="also print where each file is installed")
    p.set_defaults(func=_configs)


def _train(args: argparse.Namespace) -> int:
    from canet.training.config import load_config, parse_overrides
    from canet.training.trainer import resume, train

    if args.resume:
        clash = [
            flag
            for flag, value in (
                ("--config", args.config),
                ("--out", args.out),
                ("--patch-size", args.patch_size),
                ("--labeled", args.labeled),
                ("--seed", args.seed),
                ("--fast", args.fast),
            )
            if value is not None and value is not False  # --seed 0 and --labeled 0 are given too
        ]
        if clash:
            raise ConfigError(f"{', '.join(clash)} cannot be combined with --resume (the run keeps its config)")
        # --set may change what resume() allows (logging and checkpoint cadence, ...); it refuses the rest
        overrides = _with_flags(parse_overrides(args.overrides), {
            "data.root": args.data or None,
            "train.device": args.device or None,
            "data.num_workers": args.num_workers,
            "data.check": False if args.skip_data_check else None,
        })
        result = resume(args.resume, iterations=args.iterations, overrides=overrides, quiet=args.quiet)
    else:
        if not args.config:
            raise ConfigError("give --config NAME_OR_YAML (a new run; `canet configs` lists the names) or --resume RUN_DIR")
        sets = _with_flags(parse_overrides(args.overrides), {
            "data.root": args.data,
            "iterations": args.iterations,
            "data.patch_size": list(args.patch_size) if args.patch_size else None,
            "data.labeled": args.labeled,
            "seed": args.seed,
            "train.device": args.device,
            "data.num_workers": args.num_workers,
            "data.check": False if args.skip_data_check else None,
            "train.profile": "fast" if args.fast else None,
        })
        cfg = load_config(args.config, sets)
        out = args.out
        if out is None:
            from datetime import datetime

            out = str(Path("runs") / f"{Path(args.config).stem}_{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        result = train(cfg, out, quiet=args.quiet)
    print(f"finished {result.iteration} iterations in {result.seconds:.0f} s")
    print(f"run folder: {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_val_dice is not None:
        print(f"best validation Dice: {result.best_val_dice:.4f} ({result.best_checkpoint})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from canet.training.demo import run_demo

    run_demo(out=args.out, iterations=args.iterations, quick=args.quick, device=args.device, quiet=args.quiet)
    return 0


def list_config_lines(paths: bool = False) -> list[str]:
    """One line per packaged config: name, description (and the file with ``paths``)."""
    from canet.configs import config_table, packaged_config

    table = config_table()
    width = max(len(name) for name, _ in table)
    lines = []
    for name, text in table:
        line = f"{name:<{width}}  {text}"
        if paths:
            line += f"  [{packaged_config(name)}]"
        lines.append(line.rstrip())
    return lines


def _configs(args: argparse.Namespace) -> int:
    for line in list_config_lines(paths=args.paths):
        print(line)
    return 0


#: The config key each named option of ``canet train`` sets.
_FLAG_OF_KEY: dict[str, str] = {
    "data.root": "--data", "iterations": "--iterations", "data.patch_size": "--patch-size",
    "data.labeled": "--labeled", "seed": "--seed", "train.device": "--device",
    "data.num_workers": "--num-workers", "data.check": "--skip-data-check", "train.profile": "--fast",
}


def _with_flags(sets: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values and the named options given (not None) in one mapping.

    Raises:
        ConfigError: a key set both ways (which one was meant is not known).
    """
    out = dict(sets)
    for key, value in flags.items():
        if value is None:
            continue
        if key in sets:
            raise ConfigError(f"{_FLAG_OF_KEY[key]} and --set {key}=... both set {key}; give one of them")
        out[key] = value
    return out
