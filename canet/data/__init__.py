"""canet.data: datasets, decoding, augmentation, the training loader, checks and generators.

* :mod:`canet.data.dataset` -- :class:`Case`, :class:`Volume`, :class:`DatasetSpec`,
  :func:`open_dataset` (LA folder or datalist), :func:`load_case`, file readers;
* :mod:`canet.data.augment` -- rot90 + flip + random crop with padding;
* :mod:`canet.data.sampler` -- the two-stream (labeled / unlabeled) batch sequence;
* :mod:`canet.data.loader` -- :func:`build_train_loader`, the endless resumable :class:`TrainLoader`;
* :mod:`canet.data.check` -- :func:`check_dataset`, :class:`CheckReport`, :func:`ensure_clean`;
* :mod:`canet.data.prepare` -- :func:`prepare_la` (raw challenge NRRD -> LA h5);
* :mod:`canet.data.synthetic` -- :func:`write_synthetic_dataset`.
"""

from canet.data.augment import augment_pair, crop_with_padding
from canet.data.check import CheckReport, check_dataset, ensure_clean
from canet.data.dataset import (
    LA_CASES_DIR,
    LA_FILE_NAME,
    Case,
    DatasetSpec,
    Geometry,
    Volume,
    fill_nonfinite,
    label_on_image_grid,
    load_case,
    nrrd_affine,
    open_dataset,
    read_array,
    read_geometry,
    read_volume,
    save_nifti,
    write_case_h5,
    zscore,
)
from canet.data.loader import TrainLoader, build_train_loader
from canet.data.prepare import prepare_la
from canet.data.sampler import TwoStreamBatchSampler
from canet.data.synthetic import make_synthetic_case, write_synthetic_dataset

__all__ = [
    "LA_CASES_DIR",
    "LA_FILE_NAME",
    "Case",
    "CheckReport",
    "DatasetSpec",
    "Geometry",
    "TrainLoader",
    "TwoStreamBatchSampler",
    "Volume",
    "augment_pair",
    "build_train_loader",
    "check_dataset",
    "crop_with_padding",
    "ensure_clean",
    "fill_nonfinite",
    "load_case",
    "label_on_image_grid",
    "make_synthetic_case",
    "nrrd_affine",
    "open_dataset",
    "prepare_la",
    "read_array",
    "read_geometry",
    "read_volume",
    "save_nifti",
    "write_case_h5",
    "write_synthetic_dataset",
    "zscore",
]
