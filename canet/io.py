"""Atomic file writing: write to a temporary file in the same folder, then rename.

A run killed mid-write never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from canet.errors import DiskFullError, OutputPathError

#: A writer that fails while its disk has less than this free is taken to have
#: failed for want of space. ``torch.save`` reports a full disk as a bare
#: ``RuntimeError`` ("unexpected pos ..."), not as ``OSError(ENOSPC)``.
LOW_SPACE_BYTES = 64 * 2**20

#: The errors a write gets from a full disk (ENOSPC) or a full quota (EDQUOT).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def file_sha256(path: str | os.PathLike[str], chunk: int = 2**22) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits (read in ``chunk``-byte pieces)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(folder: str | os.PathLike[str]) -> int | None:
    """Bytes free for this user on the file system that holds ``folder`` (None if unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _out_of_space(exc: BaseException, folder: Path) -> int | None:
    """Free bytes if ``exc`` is a writer's failure on a full disk, else None."""
    if isinstance(exc, DiskFullError):  # already said (a nested atomic write)
        return None
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
        return free_bytes(folder) or 0
    if isinstance(exc, (OSError, RuntimeError)):
        free = free_bytes(folder)
        if free is not None and free < LOW_SPACE_BYTES:
            return free
    return None


@contextlib.contextmanager
def writing_to(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk or quota met in the block into a :class:`DiskFullError` naming ``path``.

    For files kept open and appended to (a metrics CSV, a journal), where a
    failed write loses at most the line being written, and for creating the
    temporary file of :func:`atomic_path`.
    """
    try:
        yield
    except OSError as exc:
        if isinstance(exc, DiskFullError) or exc.errno not in NO_SPACE_ERRNOS:
            raise
        raise DiskFullError(f"cannot write {path}: no space left on its disk") from exc


def _file_in_the_way(path: Path) -> Path | None:
    """The file that stands where one of ``path``'s folders should be (its nearest existing parent), or None."""
    for folder in path.parents:
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def _unwritable(target: Path, exc: OSError) -> OutputPathError:
    """Why ``target`` cannot be created, in one line (the error raised while trying: ``exc``)."""
    if target.is_dir():
        return OutputPathError(f"cannot write {target}: a folder of that name is there")
    blocker = _file_in_the_way(target)
    if blocker is not None:
        return OutputPathError(f"cannot write {target}: {blocker} is a file, not a folder")
    return OutputPathError(f"cannot write {target}: {exc.strerror or exc}")


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` and its parents where missing, like ``mkdir -p``.

    Raises:
        OutputPathError: a file stands under its name or under the name of one of its
            parents, or it cannot be created (no permission, read-only file system).
    """
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _file_in_the_way(path)
        if path.exists() and not path.is_dir():
            why = "a file of that name is there"
        elif blocker is not None:
            why = f"{blocker} is a file, not a folder"
        else:
            why = str(exc.strerror or exc)
        raise OutputPathError(f"cannot create the folder {path}: {why}") from exc
    return path


def _sync(path: Path) -> None:
    """Ask the OS to flush ``path``'s data to its disk (whatever wrote it has closed it); a file
    system that cannot sync (some network mounts) is left to its own guarantees. (macOS's fsync
    reaches the drive's cache, not always its platters.)"""
    try:
        fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows syncs only writable handles
    except FileNotFoundError:  # a writer that left no file: os.replace says so
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Use it for writers that take a file name (``torch.save``, ``nibabel.save``,
    ``h5py.File``). ``suffix`` keeps an extension that such writers look at
    (e.g. ``".nii.gz"``). On error the temporary file is removed and ``path`` is
    left untouched.

    Raises:
        DiskFullError: the write failed because the disk is full (errno ENOSPC or
            EDQUOT, or any write error while less than :data:`LOW_SPACE_BYTES` are
            free); the original error is its ``__cause__``.
        OutputPathError: ``path`` cannot be created: it is a folder, one of its
            folders is a file, or the folder is not writable (checked before anything
            is written).
    """
    target = Path(path)
    if target.is_dir():
        raise _unwritable(target, IsADirectoryError(errno.EISDIR, "is a folder"))
    try:
        with writing_to(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    except DiskFullError:
        raise
    except OSError as exc:
        raise _unwritable(target, exc) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp_path, 0o666 & ~umask)
        _sync(tmp_path)  # its bytes before its name: a power loss leaves the old file, not an empty one
        os.replace(tmp_path, target)
    except BaseException as exc:
        free = _out_of_space(exc, target.parent)  # measured before the partial file goes
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if free is not None:
            raise DiskFullError(
                f"cannot write {target}: no space left on its disk ({free / 2**20:.0f} MiB free); "
                f"{'the file there before is kept' if target.exists() else 'nothing was written'}"
            ) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` when the block ends cleanly."""
    if not mode.startswith(("w", "x")):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as fh:  # atomic_path syncs it
        yield fh


def atomic_write_text(path: str | os.PathLike[str], text: str, errors: str = "strict") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8; ``errors`` as for :func:`open`, e.g.
    ``"backslashreplace"`` for text holding file names that are not valid UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8", errors=errors) as fh:
        fh.write(text)
