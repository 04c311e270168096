"""User-facing errors.

Anything a user can cause (bad path, bad shape, bad config value, unknown name)
raises :class:`CanetError` with a one-line message. The command-line entry
point prints ``error: <message>`` and exits with status 2; it never shows a
traceback for these.
"""

from __future__ import annotations

from collections.abc import Iterable


class CanetError(Exception):
    """An error caused by user input, reported as one line without a traceback."""


class ConfigError(CanetError, ValueError):
    """A configuration key or value is invalid."""


class DataError(CanetError):
    """A dataset, volume or label file is missing or malformed."""


class DiskFullError(CanetError, OSError):
    """An output file could not be written because its disk (or quota) is full.

    The file under its final name is untouched (writes are atomic), so a
    training run resumes from its last checkpoint once space is freed.
    """


class OutputPathError(CanetError, OSError):
    """An output file cannot be created where it was asked for: a folder stands under its
    name, a file stands where one of its folders should be, or the folder is not writable."""


class CheckpointError(CanetError):
    """A checkpoint file is missing, unreadable or of a foreign format."""


class PatchSizeError(ConfigError, DataError):
    """A patch (window) size that is not three positive integers, or not of the needed multiple.

    One error for every place a patch size is checked (config, data sampling,
    networks, sliding windows; :func:`canet.patch_size.check_patch_size`): it
    is a :class:`ConfigError` (a setting) and a :class:`DataError` (the data
    functions refuse it), so callers catching either see it.
    """


def first_names(names: Iterable[object], count: int = 3) -> str:
    """``"a, b, c, ..."``: the first ``count`` of ``names`` (as ``str``) for a one-line message,
    with ``", ..."`` when there are more."""
    items = [str(n) for n in names]
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")
