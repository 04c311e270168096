"""The training loader: endless, reproducible, resumable batches of labeled + unlabeled patches.

Each batch is a dict::

    "image"    B x 1 x X x Y x Z float32   (augmented patches)
    "label"    B x X x Y x Z uint8         (class indices; zeros in unlabeled rows)
    "labeled"  B bool                      (True for the first labeled_bs rows)
    "case_id"  list of B str
    <key>      L x ...                     one per key that extra_targets adds,
                                           for the L = labeled_bs labeled rows only

Labels travel as uint8 and the extra targets (the SDMs) for the labeled rows
only, so that a batch holds no bytes the step does not read: the trainer widens
the labels to int64 on the device (``label.to(device).long()``), which gives
the same values as int64 labels sent from the start.

The indices come from :class:`~canet.data.sampler.TwoStreamBatchSampler`;
the augmentation of row ``j`` of batch ``k`` on rank ``r`` draws from
``default_rng([seed, 2, k, r, j])``. Nothing therefore depends on which worker
builds a batch or on how many workers there are: ``num_workers=0`` and
``num_workers=4`` give the same batches, and a loader restored with
:meth:`TrainLoader.load_state_dict` continues exactly where the saved one was.

Unlabeled cases are decoded with ``with_label=False``: the training path never
opens their label (for LA files, the ``label`` dataset of their ``.h5``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from canet.data.augment import augment_pair
from canet.data.dataset import PATH_ID_JOIN, Case, DatasetSpec, load_case
from canet.data.sampler import TwoStreamBatchSampler, _whole
from canet.errors import CanetError, ConfigError, DataError
from canet.labels import check_label_values, label_values
from canet.patch_size import check_patch_size

ExtraTargets = Callable[[np.ndarray], Mapping[str, Any]]
_AUGMENT_STREAM = 2
_RESERVED_KEYS = frozenset({"image", "label", "labeled", "case_id"})
STATE_VERSION = 1


class PatchSource(Dataset):
    """Decoded volumes (optionally cached) and the per-row augmentation.

    Items are addressed by *jobs* ``(k, row, index)``: batch number, row in
    the batch, and case index (``index < n_labeled``: a labeled case).

    Args:
        cases: labeled cases, then unlabeled cases.
        n_labeled: how many of ``cases`` are labeled.
        patch_size: ``(X, Y, Z)`` of the patches.
        seed, rank: identify the augmentation streams.
        extra_targets: ``f(label patch X x Y x Z uint8) -> {name: array}``,
            run on labeled rows (in the DataLoader workers).
        cache: keep decoded volumes in memory after their first decode.
        normalize: override each case's z-scoring (``None``: the case's default).
        num_classes: the task's classes (background included); each labeled
            volume is checked against them when decoded (:func:`canet.labels.check_label_values`),
            so training never sees a label it would misread, also with
            ``--skip-data-check``. ``None``: not checked.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        n_labeled: int,
        patch_size: Sequence[int],
        seed: int,
        rank: int = 0,
        extra_targets: ExtraTargets | None = None,
        cache: bool = True,
        normalize: bool | None = None,
        num_classes: int | None = None,
    ) -> None:
        self.cases = list(cases)
        self.num_classes = num_classes
        self.n_labeled = int(n_labeled)
        self.patch_size = check_patch_size(patch_size)
        self.seed = int(seed)
        self.rank = int(rank)
        self.extra_targets = extra_targets
        self.cache = bool(cache)
        self.normalize = normalize
        self._store: list[tuple[np.ndarray, np.ndarray | None] | None] = [None] * len(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    def _decode(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        case = self.cases[index]
        labeled = index < self.n_labeled
        vol = load_case(case, with_label=labeled, normalize=self.normalize)
        if labeled and vol.label is None:
            raise DataError(f"{case.image}: labeled case {case.case_id!r} has no label file")
        if labeled and self.num_classes is not None:
            check_label_values(label_values(vol.label), self.num_classes, f"{case.label or case.image}: label")
        return vol.image, vol.label

    def volume(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image, label or None)`` of case ``index``, decoded or from the cache."""
        item = self._store[index]
        if item is None:
            item = self._decode(index)
            if self.cache:
                self._store[index] = item
        return item

    def preload(self) -> None:
        """Decode every case into the cache (no-op without ``cache``)."""
        if self.cache:
            for i in range(len(self.cases)):
                self.volume(i)

    @property
    def cached_bytes(self) -> int:
        """Memory held by the cache."""
        total = 0
        for item in self._store:
            if item is not None:
                total += item[0].nbytes + (item[1].nbytes if item[1] is not None else 0)
        return total

    def __getitem__(self, job: tuple[int, int, int]) -> dict[str, Any]:  # type: ignore[override]
        k, row, index = job
        rng = np.random.default_rng([self.seed, _AUGMENT_STREAM, k, self.rank, row])
        image, label = self.volume(index)
        labeled = index < self.n_labeled
        image_patch, label_patch = augment_pair(image, label if labeled else None, self.patch_size, rng)
        extra = None
        if labeled and self.extra_targets is not None:
            extra = dict(self.extra_targets(label_patch))
            clash = _RESERVED_KEYS.intersection(extra)
            if clash:
                raise ValueError(f"extra_targets may not return the keys {sorted(clash)}")
        return {
            "image": image_patch,
            "label": label_patch,
            "labeled": labeled,
            "case_id": self.cases[index].case_id,
            "extra": extra,
        }


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack the samples of one batch into the batch dict (see the module docstring)."""
    images = torch.from_numpy(np.stack([s["image"] for s in samples]).astype(np.float32, copy=False))
    shape = samples[0]["image"].shape
    labels = np.stack(
        [s["label"] if s["label"] is not None else np.zeros(shape, np.uint8) for s in samples]
    ).astype(np.uint8, copy=False)
    batch: dict[str, Any] = {
        "image": images.unsqueeze(1),
        "label": torch.from_numpy(labels),
        "labeled": torch.tensor([bool(s["labeled"]) for s in samples], dtype=torch.bool),
        "case_id": [str(s["case_id"]) for s in samples],
    }
    with_extra = [s for s in samples if s["extra"] is not None]
    if with_extra:
        # Labeled rows come first, so row j of an extra target is row j of the batch.
        n = len(with_extra)
        if any(s["extra"] is not None for s in samples[n:]):
            raise ValueError("extra targets are for the labeled rows, which must come first in a batch")
        for key in with_extra[0]["extra"]:
            rows = []
            for s in with_extra:
                if key not in s["extra"]:
                    raise ValueError(f"extra_targets returned no {key!r} for case {s['case_id']!r}")
                rows.append(torch.as_tensor(np.ascontiguousarray(s["extra"][key])))
            batch[key] = torch.stack(rows)
    return batch


class _JobBatches:
    """Batch sampler for the DataLoader: lists of jobs ``(k, row, case index)`` from batch ``start`` on."""

    def __init__(self, sampler: TwoStreamBatchSampler, start: int) -> None:
        self.sampler = sampler
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        n_labeled = self.sampler.n_labeled
        k = self.start
        for lab, unl in self.sampler.iter_from(self.start):
            indices = [*lab, *(n_labeled + j for j in unl)]
            yield [(k, row, idx) for row, idx in enumerate(indices)]
            k += 1


def _one_line(exc: CanetError) -> CanetError:
    """A user error raised in a DataLoader worker, back to its original one-line message.

    The DataLoader re-raises worker exceptions with the worker's traceback in
    the message; its last line is ``module.Class: <original message>``.
    """
    text = str(exc)
    if not text.startswith("Caught ") or "\n" not in text:
        return exc
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return type(exc)(last[len(prefix):] if last.startswith(prefix) else last)


def _seed_worker(worker_id: int) -> None:
    """Seed the global RNGs of a DataLoader worker from its torch seed (base seed + worker id)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class TrainLoader:
    """Endless iterator of training batches; ``next(loader)`` gives the next one.

    Built by :func:`build_train_loader`. ``state_dict()`` records how many
    batches were handed out; ``load_state_dict()`` on a loader built with the
    same settings makes its next batch the one the saved loader would have
    given next.
    """

    def __init__(
        self,
        source: PatchSource,
        sampler: TwoStreamBatchSampler,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        multiprocessing_context: str | None = None,
    ) -> None:
        self.source = source
        self.sampler = sampler
        self.num_workers = _whole(num_workers, "num_workers", 0)
        self.pin_memory = bool(pin_memory)
        self.prefetch_factor = _whole(prefetch_factor, "prefetch_factor", 1)
        if multiprocessing_context is None and self.num_workers > 0 and sys.platform.startswith("linux"):
            # Forked workers share the cache copy-on-write and accept lambdas as extra_targets.
            multiprocessing_context = "fork"
        self.multiprocessing_context = multiprocessing_context
        self._drawn = 0
        self._iter: Iterator[dict[str, Any]] | None = None
        #: Remarks of the last :meth:`load_state_dict` for the run's log (an older state's caveats).
        self.notes: list[str] = []

    # -- sequence position
    @property
    def batches_drawn(self) -> int:
        """Batches handed out so far (the index of the next one)."""
        return self._drawn

    @property
    def batches_per_epoch(self) -> int:
        """Batches per labeled pass."""
        return self.sampler.batches_per_epoch

    @property
    def epoch(self) -> int:
        """Labeled pass of the next batch."""
        return self.sampler.epoch_of(self._drawn)

    # -- iteration
    def _start(self) -> Iterator[dict[str, Any]]:
        self.source.preload()
        workers = self.num_workers
        loader = DataLoader(
            self.source,
            batch_sampler=_JobBatches(self.sampler, self._drawn),  # type: ignore[arg-type]
            num_workers=workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory,
            worker_init_fn=_seed_worker if workers else None,
            generator=torch.Generator().manual_seed(self.sampler.seed),
            prefetch_factor=self.prefetch_factor if workers else None,
            multiprocessing_context=self.multiprocessing_context if workers else None,
        )
        return iter(loader)

    def __iter__(self) -> TrainLoader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iter is None:
            self._iter = self._start()
        try:
            batch = next(self._iter)
        except CanetError as exc:
            self._iter = None
            raise _one_line(exc) from None
        self._drawn += 1
        return batch

    def close(self) -> None:
        """Stop the worker processes (iteration restarts them where it stopped)."""
        self._iter = None

    # -- resume
    def _settings(self) -> dict[str, Any]:
        s = self.sampler
        return {
            "seed": s.seed,
            "batch_size": s.batch_size,
            "labeled_bs": s.labeled_bs,
            "world_size": s.world_size,
            "n_labeled": s.n_labeled,
            "n_unlabeled": s.n_unlabeled,
            "patch_size": list(self.source.patch_size),
        }

    def _case_ids(self) -> dict[str, list[str]]:
        cases, n = self.source.cases, self.source.n_labeled
        return {"labeled_ids": [c.case_id for c in cases[:n]], "unlabeled_ids": [c.case_id for c in cases[n:]]}

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (ints, lists): the batch count, the settings it depends on and
        the case ids in sampler order (``labeled_ids``, ``unlabeled_ids``)."""
        return {
            "version": STATE_VERSION,
            "batches_drawn": self._drawn,
            "epoch": self.epoch,
            **self._settings(),
            **self._case_ids(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the sequence of a saved loader.

        Raises:
            ConfigError: the state is malformed or was saved by a loader with
                other settings (seed, batch sizes, world size, split sizes,
                patch size) or other cases (their ids, in sampler order, where
                the state records them), whose sequence this one cannot continue.
        """
        if not isinstance(state, Mapping) or "batches_drawn" not in state:
            raise ConfigError("loader state must be a mapping with 'batches_drawn'")
        drawn = state["batches_drawn"]
        if isinstance(drawn, bool) or not isinstance(drawn, (int, np.integer)) or drawn < 0:
            raise ConfigError(f"loader state batches_drawn must be a whole number >= 0, got {drawn!r}")
        for key, mine in self._settings().items():
            if key in state and list(np.atleast_1d(state[key])) != list(np.atleast_1d(mine)):
                raise ConfigError(
                    f"the run's batch sequence was saved with {key}={state[key]!r} but now {key}={mine!r}: "
                    "the data or the batch settings differ from the run's"
                )
        for key, mine in self._case_ids().items():
            saved = state.get(key)
            if saved is None:  # states written before the ids were recorded
                continue
            saved = [str(c) for c in saved]
            if saved != mine:
                split = key.split("_")[0]
                if sorted(saved) == sorted(mine):
                    how = "the same cases in another order, which changes every batch"
                else:
                    mine_set, saved_set = set(mine), set(saved)
                    gone = [c for c in saved if c not in mine_set]
                    new_ = [c for c in mine if c not in saved_set]
                    if gone and new_ and all(PATH_ID_JOIN in c for c in (*gone, *new_)):
                        # ids made from file paths (image names shared by several cases) change when
                        # the data moves: those cannot tell other cases from the same ones elsewhere
                        continue
                    if gone:
                        how = f"{len(gone)} of its {len(saved)} are missing (e.g. {gone[0]!r})"
                        if new_:
                            how += f" and {len(new_)} are new (e.g. {new_[0]!r})"
                    else:  # the same ids, some repeated otherwise (duplicates let through --skip-data-check)
                        how = "the same case ids, repeated otherwise"
                raise ConfigError(
                    f"the data holds other {split} training cases than the run was trained on: {how}; "
                    "resume with the run's data"
                )
        self._iter = None
        self._drawn = int(drawn)
        sampler = self.sampler
        group = sampler.unlabeled_bs * sampler.world_size
        self.notes = []
        if "unlabeled_ids" not in state and group and sampler.n_unlabeled % group:
            # canet before the ids were recorded drew unlabeled rows across permutations here
            self.notes.append(
                f"warning: this checkpoint comes from an older canet whose unlabeled batches differed when "
                f"{group} unlabeled rows per step do not divide the {sampler.n_unlabeled} unlabeled cases; the "
                "run goes on with the current order, so it no longer repeats an uninterrupted run of that version"
            )


def build_train_loader(
    spec: DatasetSpec,
    patch_size: Sequence[int],
    batch_size: int,
    labeled_bs: int,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    extra_targets: ExtraTargets | None = None,
    cache: bool = True,
    normalize: bool | None = None,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> TrainLoader:
    """The endless training loader of a dataset.

    Args:
        spec: the dataset (its ``labeled`` and ``unlabeled`` splits are used).
        patch_size: ``(X, Y, Z)`` of the patches (paper: 112 x 112 x 80).
        batch_size: rows per batch on this rank (paper: 4).
        labeled_bs: labeled rows, the first of each batch (paper: 2);
            ``labeled_bs == batch_size`` trains without unlabeled data.
        seed: base seed of the sequence and of the augmentation (>= 0).
        num_workers: DataLoader worker processes (0: build batches in this process).
        rank, world_size: position under DistributedDataParallel; ranks draw
            disjoint batches from the same shuffled order.
        extra_targets: ``f(label patch X x Y x Z uint8) -> {name: array}``,
            computed in the workers for the labeled rows (e.g. the SDM); the
            batch holds them for those rows only (``labeled_bs x ...``).
        cache: decode each volume once, before the workers start, and keep it
            in memory (about 1 GB for the 80 LA training volumes).
        normalize: override the dataset's z-scoring (``None``: its default).
        pin_memory, prefetch_factor: passed to the DataLoader.

    Returns:
        The :class:`TrainLoader`; nothing is decoded until the first batch.

    Raises:
        DataError: impossible sizes (see :class:`TwoStreamBatchSampler`) or a bad patch size.
    """
    patch = check_patch_size(patch_size)
    sampler = TwoStreamBatchSampler(
        len(spec.labeled), len(spec.unlabeled), batch_size, labeled_bs, seed, rank, world_size
    )
    cases = [*spec.labeled, *spec.unlabeled] if sampler.unlabeled_bs else list(spec.labeled)
    source = PatchSource(
        cases, len(spec.labeled), patch, sampler.seed, sampler.rank, extra_targets, cache, normalize,
        num_classes=int(spec.num_classes),
    )
    return TrainLoader(source, sampler, num_workers, pin_memory, prefetch_factor)
