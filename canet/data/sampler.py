"""The two-stream batch sequence: labeled passes plus an endless unlabeled stream.

Batch ``k`` of every rank is a pure function of ``(seed, k, rank, world_size)``,
so the sequence needs no saved RNG state: resuming at batch ``k`` only needs
``k``. The global picture, with ``W = world_size``, ``L = labeled_bs`` and
``U = batch_size - labeled_bs``:

* **Labeled**: pass ``e`` is a permutation of the labeled cases drawn from
  ``default_rng([seed, 0, e])``. It is cut into global groups of ``L * W``
  indices (an incomplete last group is dropped, so one pass holds
  ``n_labeled // (L * W)`` batches); rank ``r`` takes the ``r``-th ``L`` of
  each group. Every labeled case is used at most once per pass, by one rank.
* **Unlabeled**: an endless stream of permutations ``default_rng([seed, 1, p])``
  for ``p = 0, 1, ...``, each cut into ``n_unlabeled // (U * W)`` global groups
  of ``U * W`` indices (the remainder is dropped, a different set in each
  permutation); global batch ``k`` takes the next group, rank ``r`` the ``r``-th
  ``U`` of it. Ranks therefore draw disjoint slices of the same shuffled order,
  and no step shows one unlabeled case twice. When ``U * W`` divides
  ``n_unlabeled`` (the LA configs) this is the plain concatenation of the
  permutations.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from canet.errors import DataError

_LABELED_STREAM = 0
_UNLABELED_STREAM = 1


def _whole(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise DataError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


class TwoStreamBatchSampler:
    """Deterministic endless sequence of ``(labeled, unlabeled)`` index batches.

    Args:
        n_labeled: number of labeled cases (indices ``0..n_labeled-1``).
        n_unlabeled: number of unlabeled cases (indices ``0..n_unlabeled-1``).
        batch_size: rows per batch on this rank.
        labeled_bs: labeled rows per batch (the first rows); ``1..batch_size``.
        seed: base seed (>= 0).
        rank, world_size: this process's place under DistributedDataParallel.

    Raises:
        DataError: sizes that cannot make a batch of distinct cases (fewer
            labeled cases than ``labeled_bs * world_size``, or fewer unlabeled
            cases than ``(batch_size - labeled_bs) * world_size``).
    """

    def __init__(
        self,
        n_labeled: int,
        n_unlabeled: int,
        batch_size: int,
        labeled_bs: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n_labeled = _whole(n_labeled, "the number of labeled cases", 0)
        self.n_unlabeled = _whole(n_unlabeled, "the number of unlabeled cases", 0)
        self.batch_size = _whole(batch_size, "batch_size", 1)
        self.labeled_bs = _whole(labeled_bs, "labeled_bs", 1)
        self.seed = _whole(seed, "seed", 0)
        self.world_size = _whole(world_size, "world_size", 1)
        self.rank = _whole(rank, "rank", 0)
        if self.labeled_bs > self.batch_size:
            raise DataError(f"labeled_bs must be at most batch_size ({self.batch_size}), got {labeled_bs}")
        if self.rank >= self.world_size:
            raise DataError(f"rank must be below world_size ({self.world_size}), got {rank}")
        self.unlabeled_bs = self.batch_size - self.labeled_bs
        group = self.labeled_bs * self.world_size
        if self.n_labeled < group:
            raise DataError(
                f"labeled_bs * world_size = {group} exceeds the {self.n_labeled} labeled cases"
            )
        if self.unlabeled_bs > 0 and self.n_unlabeled == 0:
            raise DataError(
                f"batch_size - labeled_bs = {self.unlabeled_bs} unlabeled rows requested but the "
                "dataset has no unlabeled cases"
            )
        if self.unlabeled_bs * self.world_size > self.n_unlabeled > 0:
            # a step would show the same unlabeled case in several rows (and to the discriminator)
            raise DataError(
                f"(batch_size - labeled_bs) * world_size = {self.unlabeled_bs * self.world_size} unlabeled rows "
                f"per step exceed the {self.n_unlabeled} unlabeled cases; lower batch_size or data.labeled"
            )
        self.batches_per_epoch = self.n_labeled // group
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    def _perm(self, stream: int, index: int, n: int) -> np.ndarray:
        key = (stream, index)
        perm = self._perm_cache.get(key)
        if perm is None:
            if len(self._perm_cache) > 8:
                self._perm_cache.clear()
            perm = np.random.default_rng([self.seed, stream, index]).permutation(n)
            self._perm_cache[key] = perm
        return perm

    def epoch_of(self, k: int) -> int:
        """The labeled pass that batch ``k`` belongs to."""
        return k // self.batches_per_epoch

    def batch(self, k: int) -> tuple[list[int], list[int]]:
        """Indices of batch ``k`` on this rank: ``(labeled indices, unlabeled indices)``."""
        if k < 0:
            raise DataError(f"batch index must be >= 0, got {k}")
        epoch, step = divmod(k, self.batches_per_epoch)
        perm = self._perm(_LABELED_STREAM, epoch, self.n_labeled)
        first = (step * self.world_size + self.rank) * self.labeled_bs
        labeled = [int(i) for i in perm[first : first + self.labeled_bs]]
        unlabeled: list[int] = []
        if self.unlabeled_bs:
            # whole global groups per permutation: a group never spans two permutations,
            # which could put one case in two rows of a step
            rnd, group_index = divmod(k, self.n_unlabeled // (self.unlabeled_bs * self.world_size))
            first = (group_index * self.world_size + self.rank) * self.unlabeled_bs
            perm = self._perm(_UNLABELED_STREAM, rnd, self.n_unlabeled)
            unlabeled = [int(i) for i in perm[first : first + self.unlabeled_bs]]
        return labeled, unlabeled

    def iter_from(self, start: int = 0) -> Iterator[tuple[list[int], list[int]]]:
        """Endless iterator of batches ``start, start + 1, ...``."""
        k = start
        while True:
            yield self.batch(k)
            k += 1
