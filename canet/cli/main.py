"""The ``canet`` command: one sub-command per module in :mod:`canet.cli`.

Each command module exposes ``add_parser(subparsers)`` (registers its
sub-parser and sets ``func``) and keeps its real work in a plain function of
the package, so that everything the CLI does can also be called from Python.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from canet import __version__
from canet.errors import CanetError
from canet.io import NO_SPACE_ERRNOS

#: Set this environment variable (``CANET_DEBUG=1``) to see the traceback of an OSError
#: that canet would otherwise report in one line.
DEBUG_ENV = "CANET_DEBUG"

#: OSError numbers that mean a path the user gave cannot be used (not a bug of canet):
#: one line, also when the error names no file.
USER_ERRNOS: frozenset[int] = frozenset({
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
    errno.ELOOP, errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV, errno.EIO,
})

# Modules of canet.cli that register sub-commands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "models_cmds",  # list-models, import-checkpoint
    "data_cmds",  # check-data, prepare-la, make-synthetic
    "train_cmds",  # train, demo
    "eval_cmds",  # evaluate, predict, score, report
    "compare_cmds",  # compare
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2.

    argparse's own ``error`` prints the whole usage block (ten lines for ``evaluate``) before the
    message; here the message names the command and points to its ``--help`` instead. Sub-parsers
    are of this class too (``add_subparsers`` makes them of the parent's type).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="canet",
        description="CA-Net: semi-supervised 3D segmentation (Trans-V generator + DAM discriminator).",
    )
    parser.add_argument("--version", action="version", version=f"canet {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"canet.cli.{name}")
        module.add_parser(sub)
    return parser


def _expand_home(args: argparse.Namespace) -> None:
    """``~`` and ``~user`` at the start of any argument, as the shell would have (``--out=~/runs``
    reaches canet unexpanded): every path option means the same folder whichever way it is written."""
    for name, value in vars(args).items():
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, name, os.path.expanduser(value))
        elif isinstance(value, list) and any(isinstance(v, str) and v.startswith("~") for v in value):
            setattr(args, name, [os.path.expanduser(v) if isinstance(v, str) and v.startswith("~") else v
                                 for v in value])


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is no file
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``canet`` console script; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        # a path that is not valid UTF-8 (b'ev\xff') is printed escaped, not a UnicodeEncodeError
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _expand_home(args)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except CanetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe broke (a worker's, say): that is no reader going away
        # The reader of stdout went away (`canet list-models | head -1`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        if exc.errno in NO_SPACE_ERRNOS:
            # Any other write that met a full disk or quota (canet's own writers say which file).
            print(f"error: cannot write{where}: {exc.strerror or 'no space left on device'}", file=sys.stderr)
            return 2
        if exc.filename is None and exc.errno not in USER_ERRNOS:
            raise
        # A file or folder the user named that cannot be used: permissions, a read-only disk, ...
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        detail = f" ({exc})" if str(exc) else ""
        print(f"error: not enough memory{detail}; use smaller inputs or settings", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # train and evaluate say where they can go on from; elsewhere there is nothing to add
        detail = f": {exc}" if str(exc) else ""
        print(f"error: interrupted{detail}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
