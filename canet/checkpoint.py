"""canet checkpoint files: saving atomically, loading safely.

A canet checkpoint is a ``dict`` saved with ``torch.save``::

    {
        "format": "canet-checkpoint",
        "version": 1,
        "created_by": "canet.training.Trainer",          # class or command that wrote it
        "model": {"name": "canet", "kwargs": {...}},    # for create_model
        "generator": state_dict,
        "config": {...} or None,                         # resolved run config
        ...                                              # training state (optional)
    }

Only types that ``torch.load(..., weights_only=True)`` accepts may be stored:
tensors, dicts, lists, tuples, str, int, float, bool, None.

:func:`read_torch_file` is the one place that calls ``torch.load``. It tells
apart a file that ``torch.save`` did not write at all (text, an empty file, a
NIfTI image: ``<path> is not a PyTorch checkpoint``) from a PyTorch file that
holds objects safe loading refuses, and never passes on PyTorch's advice to load
with ``weights_only=False``, which would run code from a file nobody vouched for.

This module reads and writes files and does not depend on the networks:
rebuilding the generator a checkpoint describes is
:func:`canet.models.build_generator` / :func:`canet.models.load_model`
(``canet.load_model``), in :mod:`canet.models.loading`.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from canet.errors import CheckpointError
from canet.io import atomic_path

FORMAT = "canet-checkpoint"
VERSION = 1

# ``torch.save``'s legacy (non-zip) format starts with a pickle of this number.
_LEGACY_MAGIC = torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")


def torch_file_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``torch.save`` format ``path`` is in, from its first bytes and zip directory.

    Returns:
        ``"zip"`` (an archive with a ``data.pkl`` record, the default format),
        ``"legacy"`` (a pickle stream that starts with torch's magic number),
        ``"damaged"`` (starts like a zip archive but has no readable directory,
        e.g. a truncated copy), or None (not written by ``torch.save``).
    """
    p = Path(path)
    with open(p, "rb") as fh:
        head = fh.read(64)
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "damaged"
        return "zip" if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) else None
    if head.startswith(b"PK\x03\x04"):
        return "damaged"
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head:
        return "legacy"
    return None


def _crc_mismatch(path: Path) -> str | None:
    """Why a zip-format checkpoint's bytes are not those written (a CRC-32 mismatch), or None.

    ``torch.load`` does not check the CRC-32 that ``torch.save`` writes for each record,
    so a file damaged inside a tensor would load as other weights without a word. A record
    whose CRC-32 is 0 is not checked: ``torch.serialization.set_crc32_options(False)``
    saves every record so.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with archive.open(info) as fh:  # zipfile compares the CRC-32 at the end of the record
                        while fh.read(1 << 22):
                            pass
                except zipfile.BadZipFile:
                    return f"the bytes of record {info.filename} do not match their CRC-32"
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"its zip records cannot be read: {exc}"
    return None


def read_torch_file(path: str | os.PathLike[str], map_location: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors.

    Raises:
        CheckpointError: ``checkpoint not found: <path>``; ``<path> is not a
            PyTorch checkpoint`` (text, empty, an image, any file ``torch.save``
            did not write); ``<path> holds objects that safe loading refuses
            (<name>)`` (a genuine PyTorch file with pickled classes or
            functions); ``cannot read checkpoint <path>: <reason>`` (damaged:
            truncated, or bytes that do not match the CRC-32 ``torch.save`` wrote).
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; give the checkpoint file in it (e.g. {p / 'checkpoints' / 'last.pt'})")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    kind = torch_file_kind(p)
    if kind is None:
        raise CheckpointError(f"{p} is not a PyTorch checkpoint")
    if kind == "damaged":
        raise CheckpointError(f"cannot read checkpoint {p}: a damaged or truncated file (no zip directory)")
    if kind == "zip":
        bad = _crc_mismatch(p)
        if bad is not None:
            raise CheckpointError(f"cannot read checkpoint {p}: a damaged file ({bad})")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{p} is a PyTorch file but holds objects that safe loading refuses{what}; canet reads "
            "checkpoints of tensors, numbers, strings and plain containers only"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure is a damaged file
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        if "weights_only" in first:  # never repeat the advice to unpickle untrusted code
            first = type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from None


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The ``{"name", "kwargs"}`` spec of a model made by ``create_model``."""
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    module = getattr(module, "_orig_mod", module)  # unwrap torch.compile
    spec = getattr(module, "canet_spec", None)
    if spec is None:
        raise ValueError("model was not made by canet.create_model; its spec is unknown")
    return {"name": spec["name"], "kwargs": dict(spec["kwargs"])}


def make_checkpoint(
    model: nn.Module, created_by: str, config: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Assemble a checkpoint dict for ``model`` (a ``create_model`` product)."""
    module = model.module if hasattr(model, "module") else model
    module = getattr(module, "_orig_mod", module)
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_by": created_by,
        "model": model_spec(model),
        "generator": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "config": config,
        **extra,
    }


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _looks_original(payload: Any) -> bool:
    """Whether ``payload`` looks like a state dict of the authors' CA-Net code: its keys, or those
    of a ``state_dict`` / ``model`` entry in it, start with ``block_one`` (after any ``module.``)."""
    if not isinstance(payload, dict):
        return False
    for found in (payload, payload.get("state_dict"), payload.get("model")):
        if isinstance(found, dict) and any(str(k).removeprefix("module.").startswith("block_one") for k in found):
            return True
    return False


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a canet checkpoint with ``weights_only=True`` and check its format.

    Raises:
        CheckpointError: the file is missing, not a PyTorch file, unreadable (see
            :func:`read_torch_file`), or not a canet checkpoint.
    """
    p = Path(path)
    payload = read_torch_file(p, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = " (it looks like an original CA-Net state dict: run `canet import-checkpoint` first)" \
            if _looks_original(payload) else ""
        raise CheckpointError(f"{p} is not a canet checkpoint{hint}")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{p} has checkpoint version {payload.get('version')!r}, this canet reads {VERSION}"
        )
    spec = payload.get("model")
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("kwargs"), dict)):
        raise CheckpointError(f"{p} is an incomplete canet checkpoint: it records no model (name and arguments)")
    if not isinstance(payload.get("generator"), dict):
        raise CheckpointError(f"{p} is an incomplete canet checkpoint: it holds no generator weights")
    return payload
