"""How a model's training data looked, so that inference can give it the same kind of input.

:func:`describe_training_data` returns the record the trainer stores in every
checkpoint under ``"preprocessing"``; ``canet predict`` and ``canet evaluate``
read it back (:func:`canet.evaluation.checkpoint_settings`)::

    {"normalize": "zscore",     # or "none": what the network's input images were
     "orientation": "RAS",      # axis codes of the training images, None: stored voxel order
     "spacing": [0.8, 0.8, 2.0],  # median voxel size (mm) in that orientation, None: unknown
     "lcc": False,              # the dataset's largest-connected-component default
     "dataset": "datalist"}     # or "la"

``"zscore"`` means each image was z-scored over its whole volume (its own mean
and standard deviation), so there are no dataset-wide intensity statistics to
store. LA ``.h5`` volumes were z-scored that way when they were made and carry
no geometry: their record is ``{"normalize": "zscore", "orientation": None,
"spacing": None, "lcc": True, "dataset": "la"}``.

The orientation is the one most training images share (``canet check-data``
warns when they do not all share it); images whose files state no orientation
are left out of it, and their spacing is taken as stored.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from canet.data.dataset import DatasetSpec, read_geometry
from canet.data.orientation import reorientation

__all__ = ["LA_RECORD", "describe_training_data"]

#: The record of a model trained on the LA layout.
LA_RECORD: dict[str, Any] = {
    "normalize": "zscore", "orientation": None, "spacing": None, "lcc": True, "dataset": "la",
}


def describe_training_data(spec: DatasetSpec) -> dict[str, Any]:
    """The ``"preprocessing"`` record of a training set (reads image headers only).

    Args:
        spec: the training dataset; its labeled and unlabeled images are read.

    Returns:
        ``{"normalize", "orientation", "spacing", "lcc", "dataset"}`` (see the
        module docstring).
    """
    if spec.kind == "la":
        return dict(LA_RECORD)
    geometries = [read_geometry(case.image) for case in spec.train]
    codes = Counter(g.axcodes for g in geometries if g.axcodes is not None)
    orientation = codes.most_common(1)[0][0] if codes else None
    spacings = []
    for g in geometries:
        if g.unit != "mm":
            continue
        if orientation is not None and g.oriented:
            spacings.append(reorientation(g.affine, g.shape, orientation).spacing)
        else:
            spacings.append(g.spacing)
    spacing = [float(v) for v in np.median(np.asarray(spacings), axis=0)] if spacings else None
    return {
        "normalize": "zscore" if spec.normalize else "none",
        "orientation": orientation,
        "spacing": spacing,
        "lcc": bool(spec.lcc),
        "dataset": spec.kind,
    }
