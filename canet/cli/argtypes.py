"""argparse value types shared by the command modules."""

from __future__ import annotations

import argparse


def _int_at_least(text: str, minimum: int, wanted: str) -> int:
    """``text`` as an integer >= ``minimum``, else argparse's one-line usage error quoting it."""
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1, else argparse's one-line usage error quoting ``text``."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (a seed), else argparse's one-line usage error quoting ``text``."""
    return _int_at_least(text, 0, "an integer >= 0")


def output_path(text: str) -> str:
    """A path to write to; an empty one (``--out ''``, which would mean the current folder) is
    argparse's usage error."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return text
