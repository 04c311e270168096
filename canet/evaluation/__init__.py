"""Evaluate a checkpoint on a dataset split, segment new scans, score prediction folders.

The three functions behind ``canet evaluate``, ``canet predict`` and ``canet score``,
one module each, with the parts they share:

- :mod:`~canet.evaluation.files`: which image files an input names, prediction /
  ground-truth pairs;
- :mod:`~canet.evaluation.checkpoints`: what a checkpoint says about inference
  (patch size, classes, the training data's preprocessing, how it was selected);
- :mod:`~canet.evaluation.oriented`: prediction in the training orientation;
- :mod:`~canet.evaluation.notes`: the warnings (NaN voxels, voxel size);
- :mod:`~canet.evaluation.evaluator`, :mod:`~canet.evaluation.prediction`,
  :mod:`~canet.evaluation.scoring`: the three commands.

Everything is importable from ``canet.evaluation`` itself:

- :func:`evaluate` predicts every case of a split with sliding windows
  (:func:`canet.inferers.predict_volume`) and writes ``metrics.csv``
  (``case,dice,jaccard,hd95,asd,seconds``) and ``summary.json`` (see
  :mod:`canet.metrics.summary`). :func:`evaluate_model` does the same for a
  model already in memory (the trainer and the demo use it).
- :func:`predict_files` segments NIfTI / NRRD / HDF5 files and writes NIfTI
  masks with each input's affine, in each input's voxel order.
- :func:`score` computes the same metrics for masks made elsewhere.

How volumes are predicted (mode, windows, TTA, LCC, device, bf16 autocast) is
one :class:`~canet.inferers.settings.InferenceSettings`, given to each
function as ``settings`` (or field by field as keyword arguments); the device
defaults to ``auto`` (CUDA where available). ``summary.json`` records the
settings used (:meth:`~canet.inferers.settings.InferenceSettings.record`).

Distances are in voxels for the LA benchmark (as published) and in mm (from the
volumes' headers) for other data, unless asked otherwise (``spacing``); a file
that states no voxel size (an NRRD without space directions) is scored in
voxels, and ``summary.json`` says which in ``"distance_unit"``.

Checkpoints written by the trainer record how the training data looked
(``"preprocessing"``, see :mod:`canet.data.preprocessing`). ``predict`` and
``evaluate`` give the network the same kind of input: z-scored or raw
intensities as in training, and each volume turned (flips and transposes,
no resampling) into the training orientation, the prediction turned back into
the volume's own voxel order; they warn when a volume's voxel size differs
from the training data's median by more than 20 %. Checkpoints without the
record (written by canet before it existed, or imported) get the same
description from the training data their config names (``data.root``: the
datalist's ``normalize`` and ``postprocess.lcc``, its images' orientation and
voxel size), where it can still be read; otherwise z-scoring (in ``evaluate``:
the evaluated dataset's normalisation), stored voxel order, no spacing check
and LCC on in ``predict``. Either way one warning line says what is used
(:func:`older_checkpoint_note`).
"""

from canet.data.dataset import strip_suffix
from canet.evaluation.checkpoints import (
    DEFAULT_PATCH_SIZE,
    checkpoint_selection,
    checkpoint_settings,
    load_for_inference,
    older_checkpoint_note,
)
from canet.evaluation.evaluator import SPACING_CHOICES, SPLITS, VolumeLike, evaluate, evaluate_model
from canet.evaluation.files import find_image_files, find_score_pairs, image_file_shape
from canet.evaluation.notes import (
    SPACING_TOLERANCE,
    nonfinite_warning,
    print_warning,
    spacing_mismatch,
)
from canet.evaluation.oriented import predict_oriented
from canet.evaluation.prediction import predict_files
from canet.evaluation.scoring import score

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "SPACING_CHOICES",
    "SPACING_TOLERANCE",
    "SPLITS",
    "VolumeLike",
    "checkpoint_selection",
    "checkpoint_settings",
    "evaluate",
    "evaluate_model",
    "find_image_files",
    "find_score_pairs",
    "image_file_shape",
    "load_for_inference",
    "nonfinite_warning",
    "older_checkpoint_note",
    "predict_files",
    "predict_oriented",
    "print_warning",
    "score",
    "spacing_mismatch",
    "strip_suffix",
]
