"""What a checkpoint says about inference: patch size, classes, the training data's preprocessing, selection.

:func:`checkpoint_settings` reads the ``"preprocessing"`` record the trainer
stores (:mod:`canet.data.preprocessing`), or, for a checkpoint without it
(written before the record existed, or imported), rebuilds it from the training
data its config names; :func:`older_checkpoint_note` says in one line what is
used then. :func:`checkpoint_selection` says how a checkpoint was chosen, and
:func:`load_for_inference` loads it onto a device.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from canet.device import select_device
from canet.errors import CanetError, CheckpointError, DataError
from canet.patch_size import check_patch_size

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "checkpoint_selection",
    "checkpoint_settings",
    "load_for_inference",
    "older_checkpoint_note",
]


DEFAULT_PATCH_SIZE: tuple[int, int, int] = (112, 112, 80)


def _find_key(config: Any, key: str) -> Any:
    """``config[key]``, else the first ``config[section][key]`` one level down, else None."""
    if not isinstance(config, dict):
        return None
    if key in config:
        return config[key]
    for value in config.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def _older_record(config: Any) -> tuple[dict[str, Any] | None, str, str | None]:
    """The preprocessing of a checkpoint without a record, from the training data its config names.

    Older trainers recorded the normalisation only in the training datalist
    (``normalize``, ``postprocess.lcc``) and the orientation and voxel size only
    in the training images' headers; the resolved config names where they are
    (``data.root``). :func:`canet.data.preprocessing.describe_training_data`
    reads them as the trainer would have.

    Returns:
        ``(record or None, source, root)``: source ``"training data"`` when read
        there, ``"none"`` when the config names no training data or it cannot be
        read now (moved, deleted, another machine).
    """
    from canet.data import open_dataset
    from canet.data.preprocessing import describe_training_data

    data = config.get("data") if isinstance(config, dict) else None
    root = data.get("root") if isinstance(data, dict) else None
    if not isinstance(root, str) or not root:
        return None, "none", None
    try:
        return describe_training_data(open_dataset(root)), "training data", root
    except CanetError:
        return None, "none", root


def checkpoint_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """Inference settings of a loaded checkpoint.

    Returns:
        ``{"patch_size", "num_classes", "normalize", "orientation", "spacing",
        "lcc", "recorded", "source", "training_data"}``: the patch size from
        ``config["patch_size"]`` (or one section down), else the model's
        ``patch_size`` argument, else ``(112, 112, 80)``; the number of classes
        from the model arguments (default 2). The rest describe the network's
        training data: ``normalize`` (bool: whether its input images were
        z-scored; None: unknown), ``orientation`` (axis codes or None: stored
        voxel order), ``spacing`` (median training voxel size in mm or None) and
        ``lcc`` (the training dataset's post-processing default; None: unknown).
        They come from the checkpoint's ``"preprocessing"`` record
        (:mod:`canet.data.preprocessing`; ``recorded`` True, ``source``
        ``"record"``). A checkpoint without it (written by canet before the
        record existed, or imported) gets them from the training data its config
        names (``source`` ``"training data"``: the datalist's normalisation and
        LCC default, its images' orientation and voxel size), else none of them
        (``source`` ``"none"``, all None); ``training_data`` is that path (or None).
        :func:`older_checkpoint_note` says in one line what is used then.
    """
    config = payload.get("config")
    kwargs = (payload.get("model") or {}).get("kwargs") or {}
    patch = _find_key(config, "patch_size")
    if patch is None:
        patch = kwargs.get("patch_size", DEFAULT_PATCH_SIZE)
    try:
        patch_size = check_patch_size(patch)
    except CanetError:
        raise CheckpointError(f"checkpoint has a bad patch size {patch!r}") from None
    num_classes = kwargs.get("num_classes", _find_key(config, "num_classes") or 2)
    record = payload.get("preprocessing")
    recorded = isinstance(record, dict)
    source, root = "record", None
    if not recorded:
        record, source, root = _older_record(config)
        if record is None:
            return {
                "patch_size": patch_size, "num_classes": int(num_classes), "normalize": None,
                "orientation": None, "spacing": None, "lcc": None, "recorded": False,
                "source": source, "training_data": root,
            }
    assert isinstance(record, dict)
    mode = record.get("normalize")
    if mode not in ("zscore", "none"):
        raise CheckpointError(f"checkpoint records an unknown normalisation {mode!r}")
    orientation = record.get("orientation")
    if orientation is not None:
        from canet.data.orientation import check_axcodes

        try:
            orientation = check_axcodes(orientation)
        except DataError:
            raise CheckpointError(f"checkpoint records a bad orientation {orientation!r}") from None
    spacing = record.get("spacing")
    if spacing is not None:
        try:
            spacing = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            spacing = ()
        if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise CheckpointError(f"checkpoint records a bad spacing {record.get('spacing')!r}")
    lcc = record.get("lcc")
    return {
        "patch_size": patch_size,
        "num_classes": int(num_classes),
        "normalize": mode == "zscore",
        "orientation": orientation,
        "spacing": spacing,
        "lcc": None if lcc is None else bool(lcc),
        "recorded": recorded,
        "source": source,
        "training_data": root,
    }


def older_checkpoint_note(name: str, settings: dict[str, Any], normalize: bool, lcc: bool) -> str | None:
    """One line saying what is used for a checkpoint without a preprocessing record (None when it has one).

    Args:
        name: how to name the checkpoint (its path).
        settings: :func:`checkpoint_settings` of it.
        normalize, lcc: the z-scoring and LCC that will be applied.
    """
    if settings["source"] == "record":
        return None
    what = (
        f"{'z-scored' if normalize else 'raw'} images in "
        f"{settings['orientation'] + ' orientation' if settings['orientation'] else 'stored voxel order'}, "
        f"LCC {'on' if lcc else 'off'}"
    )
    start = f"{name} has no record of its training data's preprocessing (an older canet or an imported file)"
    if settings["source"] == "training data":
        return f"{start}; read from its training data {settings['training_data']}: {what}"
    where = (
        f"its training data {settings['training_data']} cannot be read" if settings["training_data"]
        else "it names no training data"
    )
    return f"{start} and {where}: assuming {what}, no voxel-size check"


def load_for_inference(checkpoint: str | os.PathLike[str], device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The generator of a checkpoint on ``device``, in eval mode, and the checkpoint's payload.

    Raises:
        CheckpointError: the file is missing, unreadable or not a canet checkpoint.
        CanetError: the device is not available.
    """
    from canet.checkpoint import load_checkpoint
    from canet.models import build_generator

    payload = load_checkpoint(checkpoint, map_location="cpu")
    model = build_generator(payload, source=checkpoint)
    try:
        select_device(device)  # cuda:N becomes the current device: no context on GPU 0
        model = model.to(device)
    except (RuntimeError, AssertionError) as exc:  # e.g. "Torch not compiled with CUDA enabled"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CanetError(f"device {str(device)!r} is not available: {first}") from None
    return model.eval(), payload


def checkpoint_selection(payload: dict[str, Any], split: str) -> dict[str, Any]:
    """How a checkpoint was chosen, for the summary of scoring it on ``split``.

    ``best_val.pt`` of a run records ``selected_on`` (the split whose Dice picked
    it); ``last.pt`` and older checkpoints record none.

    Returns:
        ``{"selected_on": split name or None, "selected_on_data": the training
        data root or None, "selected_on_scored_split": bool}``; the last is True
        when the checkpoint was picked on a split of the same name as ``split``
        (also when the data folders differ: a copy of the same set cannot be
        told apart, and a needless warning costs less than a silent one).
    """
    selected = payload.get("selected_on")
    root = ((payload.get("config") or {}).get("data") or {}).get("root") if selected else None
    return {
        "selected_on": selected,
        "selected_on_data": root,
        "selected_on_scored_split": selected is not None and selected == split,
    }
