"""The training loader: batch composition, reproducibility, resume, DDP shards, unlabeled labels unread."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from canet.data import (
    LA_CASES_DIR,
    LA_FILE_NAME,
    TwoStreamBatchSampler,
    build_train_loader,
    open_dataset,
)
from canet.errors import ConfigError, DataError

PATCH = (24, 24, 16)


def _extra(label: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in extra target that depends on every voxel of the label patch."""
    return {"sdm": (label.astype(np.float32) * 2 - 1)[None], "fg": np.array([label.sum()], np.int64)}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]) for k in a
    )


def test_batches_have_labeled_rows_first_and_targets_for_labeled_rows_only(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=4)
    labeled_ids = {c.case_id for c in spec.labeled}
    unlabeled_ids = {c.case_id for c in spec.unlabeled}
    loader = build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=0, extra_targets=_extra)
    assert iter(loader) is loader and loader.batches_per_epoch == 2
    for _ in range(6):
        batch = next(loader)
        assert batch["image"].shape == (4, 1, *PATCH) and batch["image"].dtype == torch.float32
        # Labels travel as uint8 (an eighth of int64's bytes), extra targets for the labeled rows only.
        assert batch["label"].shape == (4, *PATCH) and batch["label"].dtype == torch.uint8
        assert batch["labeled"].tolist() == [True, True, False, False]
        assert set(batch["case_id"][:2]) <= labeled_ids and set(batch["case_id"][2:]) <= unlabeled_ids
        assert batch["sdm"].shape == (2, 1, *PATCH) and batch["fg"].shape == (2, 1)
        for row in range(2):  # labeled rows: the targets of their own label patch
            lab = batch["label"][row]
            assert lab.sum() > 0  # 24^2 x 16 patches of a 40^2 x 24 volume always meet the atrium
            assert torch.equal(batch["sdm"][row, 0], lab.float() * 2 - 1)
            assert int(batch["fg"][row, 0]) == int(lab.long().sum())
        assert not batch["label"][2:].any()
        assert batch["image"][2:].abs().sum() > 0  # unlabeled images are real data
    assert loader.batches_drawn == 6 and loader.epoch == 3


def test_labeled_passes_and_unlabeled_stream(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=4)
    loader = build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=9)
    batches = [next(loader)["case_id"] for _ in range(4)]  # 2 passes over the 4 labeled cases
    for e in range(2):
        ids = [i for b in batches[2 * e : 2 * e + 2] for i in b[:2]]
        assert sorted(ids) == sorted(c.case_id for c in spec.labeled)  # each once per pass
    stream = [i for b in batches for i in b[2:]]  # 8 draws = 2 passes of the 4 unlabeled cases
    for p in range(2):
        assert sorted(stream[4 * p : 4 * p + 4]) == sorted(c.case_id for c in spec.unlabeled)
    orders = {tuple(i for b in batches[2 * e : 2 * e + 2] for i in b[:2]) for e in range(2)}
    more = [next(loader)["case_id"] for _ in range(8)]
    orders |= {tuple(i for b in more[2 * e : 2 * e + 2] for i in b[:2]) for e in range(4)}
    assert len(orders) > 1  # reshuffled between passes


def test_same_seed_same_batches_any_worker_count(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=4)
    kwargs = dict(batch_size=4, labeled_bs=2, extra_targets=lambda lab: {"sdm": lab.astype(np.float32)})
    a = [next(it) for it in [build_train_loader(spec, PATCH, seed=5, **kwargs)] for _ in range(5)]
    b_loader = build_train_loader(spec, PATCH, seed=5, num_workers=2, **kwargs)
    b = [next(b_loader) for _ in range(5)]
    b_loader.close()
    c_loader = build_train_loader(spec, PATCH, seed=6, cache=False, **kwargs)
    c = [next(c_loader) for _ in range(5)]
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x["image"], y["image"]) for x, y in zip(a, c))


def test_resume_continues_the_same_sequence(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=5)
    build = dict(spec=spec, patch_size=PATCH, batch_size=3, labeled_bs=2, seed=21, extra_targets=_extra)
    reference = build_train_loader(**build)
    expected = [next(reference) for _ in range(9)]

    first = build_train_loader(**build)
    for _ in range(5):
        next(first)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # as a checkpoint would store it
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert state["batches_drawn"] == 5 and state["epoch"] == 2  # 5 labeled // 2 = 2 batches a pass
    assert all(_same(next(first), e) for e in expected[5:7])

    resumed = build_train_loader(**build, num_workers=2)
    resumed.load_state_dict(state)
    got = [next(resumed) for _ in range(4)]
    resumed.close()
    assert all(_same(g, e) for g, e in zip(got, expected[5:9]))
    first.load_state_dict(state)  # rewinding a loader that has run replays from there
    assert _same(next(first), expected[5])


def test_resume_refuses_a_foreign_state(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=4)
    state = build_train_loader(spec, PATCH, 4, 2, seed=1).state_dict()
    other = build_train_loader(spec, PATCH, 4, 2, seed=2)
    with pytest.raises(ConfigError, match="saved with seed=1 but now seed=2: the data or the batch settings differ"):
        other.load_state_dict(state)
    with pytest.raises(ConfigError, match="batches_drawn must be a whole number >= 0, got -1"):
        other.load_state_dict({"batches_drawn": -1})
    with pytest.raises(ConfigError, match="patch_size"):
        build_train_loader(spec, (16, 16, 16), 4, 2, seed=1).load_state_dict(state)


def test_resume_refuses_other_cases_of_the_same_count(synth_root: Path) -> None:
    # the run's data swapped for other cases (a datalist edited, another folder given with --data):
    # the counts still match, so only the ids can tell
    spec = open_dataset(synth_root, labeled=4)
    state = build_train_loader(spec, PATCH, 4, 2, seed=1).state_dict()
    ids = [c.case_id for c in spec.labeled]
    assert state["labeled_ids"] == ids and state["unlabeled_ids"] == [c.case_id for c in spec.unlabeled]
    swapped = dataclasses.replace(spec, labeled=[*spec.labeled[:3], spec.unlabeled[0]],
                                  unlabeled=[spec.labeled[3], *spec.unlabeled[1:]])
    with pytest.raises(ConfigError) as info:
        build_train_loader(swapped, PATCH, 4, 2, seed=1).load_state_dict(state)
    assert str(info.value) == (
        f"the data holds other labeled training cases than the run was trained on: 1 of its 4 are missing "
        f"(e.g. {ids[3]!r}) and 1 are new (e.g. {spec.unlabeled[0].case_id!r}); resume with the run's data"
    )
    reordered = dataclasses.replace(spec, labeled=spec.labeled[::-1])
    with pytest.raises(ConfigError, match="the same cases in another order, which changes every batch"):
        build_train_loader(reordered, PATCH, 4, 2, seed=1).load_state_dict(state)
    # a state saved before the ids were recorded is still accepted
    old = {k: v for k, v in state.items() if not k.endswith("_ids")}
    accepted = build_train_loader(swapped, PATCH, 4, 2, seed=1)
    accepted.load_state_dict(old)
    assert accepted.notes == []
    # 4 unlabeled cases, 2 unlabeled rows a step: the unlabeled order is the one older versions drew, so
    # an old state gets no remark; with 3 unlabeled cases (2 rows do not divide 3) it gets a warning
    odd = dataclasses.replace(spec, unlabeled=spec.unlabeled[:3])
    old_odd = {**old, "n_unlabeled": 3}
    loader = build_train_loader(odd, PATCH, 4, 2, seed=1)
    loader.load_state_dict(old_odd)
    assert len(loader.notes) == 1 and "older canet whose unlabeled batches differed" in loader.notes[0]
    loader.load_state_dict({**old_odd, "labeled_ids": state["labeled_ids"],
                            "unlabeled_ids": [c.case_id for c in odd.unlabeled]})
    assert loader.notes == []  # a state of this version
    # ids made from paths (several images called image.nii.gz) change when the data moves: not compared
    moved = {**state, "labeled_ids": [f"old__p{i}__image" for i in range(4)]}
    paths = dataclasses.replace(spec, labeled=[dataclasses.replace(c, case_id=f"new__p{i}__image")
                                               for i, c in enumerate(spec.labeled)])
    build_train_loader(paths, PATCH, 4, 2, seed=1).load_state_dict(moved)
    # duplicate ids repeated otherwise (let through --skip-data-check): one line, not an IndexError
    dupes = {**state, "labeled_ids": [ids[0], ids[0], ids[1], ids[2]]}
    twice = dataclasses.replace(spec, labeled=[spec.labeled[0], spec.labeled[1], spec.labeled[1], spec.labeled[2]])
    with pytest.raises(ConfigError, match="the same case ids, repeated otherwise; resume with the run's data"):
        build_train_loader(twice, PATCH, 4, 2, seed=1).load_state_dict(dupes)


def test_supervised_only_and_size_errors(synth_root: Path) -> None:
    spec = open_dataset(synth_root)  # all 8 labeled, no unlabeled set
    loader = build_train_loader(spec, PATCH, batch_size=2, labeled_bs=2, seed=0)
    batch = next(loader)
    assert batch["labeled"].all() and batch["label"].sum() > 0
    with pytest.raises(DataError, match="2 unlabeled rows requested but the dataset has no unlabeled cases"):
        build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=0)
    with pytest.raises(DataError, match="labeled_bs must be at most batch_size \\(2\\), got 3"):
        build_train_loader(spec, PATCH, batch_size=2, labeled_bs=3, seed=0)
    with pytest.raises(DataError, match="labeled_bs must be at least 1, got 0"):
        build_train_loader(spec, PATCH, batch_size=2, labeled_bs=0, seed=0)
    with pytest.raises(DataError, match="labeled_bs \\* world_size = 12 exceeds the 8 labeled cases"):
        build_train_loader(spec, PATCH, batch_size=6, labeled_bs=6, seed=0, world_size=2)
    with pytest.raises(DataError, match="rank must be below world_size \\(2\\), got 2"):
        build_train_loader(spec, PATCH, batch_size=2, labeled_bs=2, seed=0, rank=2, world_size=2)
    with pytest.raises(DataError, match="seed must be at least 0, got -1"):
        build_train_loader(spec, PATCH, batch_size=2, labeled_bs=2, seed=-1)
    with pytest.raises(DataError, match="patch_size must be three positive integers"):
        build_train_loader(spec, (24, 24), batch_size=2, labeled_bs=2, seed=0)


def test_more_unlabeled_rows_than_unlabeled_cases_is_refused() -> None:
    # 3 unlabeled rows from 1 unlabeled case: every step showed that one case three times
    with pytest.raises(DataError, match=r"^\(batch_size - labeled_bs\) \* world_size = 3 unlabeled rows per step "
                                        r"exceed the 1 unlabeled cases; lower batch_size or data.labeled$"):
        TwoStreamBatchSampler(5, 1, 4, 1, seed=0)
    with pytest.raises(DataError, match=r"world_size = 4 unlabeled rows per step exceed the 3 unlabeled cases"):
        TwoStreamBatchSampler(4, 3, 3, 1, seed=0, rank=0, world_size=2)
    sampler = TwoStreamBatchSampler(5, 3, 4, 1, seed=0)  # as many unlabeled rows as cases: fine
    assert sorted(sampler.batch(0)[1]) == [0, 1, 2]


def test_ranks_draw_disjoint_batches_from_one_order() -> None:
    world = 3
    samplers = [TwoStreamBatchSampler(12, 7, 3, 2, seed=4, rank=r, world_size=world) for r in range(world)]
    single = TwoStreamBatchSampler(12, 7, 3 * world, 2 * world, seed=4)
    assert samplers[0].batches_per_epoch == 2
    for k in range(6):
        parts = [s.batch(k) for s in samplers]
        labeled = [i for lab, _ in parts for i in lab]
        unlabeled = [i for _, unl in parts for i in unl]
        # the ranks' shares are exactly one big batch of the same shuffled order
        assert (labeled, unlabeled) == single.batch(k)
        assert len(set(labeled)) == len(labeled) == 6
    epoch0 = Counter(i for k in range(2) for s in samplers for i in s.batch(k)[0])
    assert sorted(epoch0) == list(range(12)) and set(epoch0.values()) == {1}
    # 7 unlabeled cases make two whole global groups of 3 per permutation (one case left over)
    stream = [i for k in range(6) for s in samplers for i in s.batch(k)[1]]
    for p in range(3):
        part = stream[6 * p : 6 * p + 6]
        assert len(set(part)) == 6 and set(part) <= set(range(7))


@pytest.mark.parametrize(("n_unlabeled", "unlabeled_bs", "world"), [(3, 2, 1), (5, 2, 2), (7, 3, 2)])
def test_no_step_shows_an_unlabeled_case_twice(n_unlabeled: int, unlabeled_bs: int, world: int) -> None:
    # counts that U * W does not divide: a step across two permutations could repeat a case
    samplers = [
        TwoStreamBatchSampler(4 * world, n_unlabeled, 1 + unlabeled_bs, 1, seed=3, rank=r, world_size=world)
        for r in range(world)
    ]
    for k in range(300):
        step = [i for s in samplers for i in s.batch(k)[1]]
        assert len(step) == unlabeled_bs * world
        assert len(set(step)) == len(step), (k, step)
    # every case is still drawn: the left-over ones differ from one permutation to the next
    assert {i for k in range(300) for s in samplers for i in s.batch(k)[1]} == set(range(n_unlabeled))


def test_unlabeled_stream_concatenates_permutations_when_the_batch_divides_the_cases() -> None:
    # 6 unlabeled cases, 2 rows a step: three steps per permutation, taken in order (as runs resumed
    # across versions of canet expect)
    sampler = TwoStreamBatchSampler(4, 6, 3, 1, seed=11)
    expected = np.concatenate([np.random.default_rng([11, 1, p]).permutation(6) for p in range(4)])
    drawn = [i for k in range(12) for i in sampler.batch(k)[1]]
    assert drawn == [int(i) for i in expected]


def test_ddp_loaders_draw_disjoint_cases(synth_root: Path) -> None:
    spec = open_dataset(synth_root, labeled=4)
    loaders = [
        build_train_loader(spec, PATCH, batch_size=2, labeled_bs=1, seed=3, rank=r, world_size=2)
        for r in range(2)
    ]
    for _ in range(2):  # one labeled pass: 4 cases / (1 x 2 ranks)
        rows = [next(loader)["case_id"] for loader in loaders]
        assert rows[0][0] != rows[1][0] and rows[0][1] != rows[1][1]


def _drop_labels(root: Path, ids: list[str]) -> None:
    for case_id in ids:
        with h5py.File(root / LA_CASES_DIR / case_id / LA_FILE_NAME, "r+") as fh:
            del fh["label"]


@pytest.mark.parametrize("cache", [True, False])
def test_unlabeled_labels_are_never_read(synth_copy: Path, cache: bool) -> None:
    spec = open_dataset(synth_copy, labeled=3)
    _drop_labels(synth_copy, [c.case_id for c in spec.unlabeled])  # reading one would raise
    loader = build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=0, cache=cache,
                                extra_targets=_extra)
    seen = set()
    for _ in range(12):  # 5 unlabeled cases, 4 drawn per permutation: six permutations
        batch = next(loader)
        seen.update(batch["case_id"][2:])
    assert seen == {c.case_id for c in spec.unlabeled}
    # the same damage on a labeled case is caught, with its file
    _drop_labels(synth_copy, [spec.labeled[0].case_id])
    broken = build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=0)
    with pytest.raises(DataError, match=f"{spec.labeled[0].case_id}.*no 'label' dataset"):
        next(broken)
    # decoded in a worker (no cache): still the same one-line message, not the worker's traceback
    in_worker = build_train_loader(spec, PATCH, batch_size=4, labeled_bs=2, seed=0, cache=False,
                                   num_workers=1)
    with pytest.raises(DataError) as info:
        for _ in range(10):  # the broken labeled case comes within the first passes
            next(in_worker)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message == f"{spec.labeled[0].image}: no 'label' dataset (the file holds: image)"


def test_real_la_batch(la_small: Path) -> None:
    spec = open_dataset(la_small, labeled=1)
    loader = build_train_loader(spec, (112, 112, 80), batch_size=3, labeled_bs=1, seed=1337,
                                extra_targets=_extra)
    batch = next(loader)
    assert batch["image"].shape == (3, 1, 112, 112, 80) and batch["sdm"].shape == (1, 1, 112, 112, 80)
    assert batch["labeled"].tolist() == [True, False, False]
    assert batch["case_id"][0] == spec.labeled[0].case_id
    assert sorted(batch["case_id"][1:]) == sorted(c.case_id for c in spec.unlabeled)  # two distinct cases
    fractions = batch["label"][:1].float().mean(dim=(1, 2, 3))
    assert torch.all(fractions > 0.01) and torch.all(fractions < 0.5)
    # the image is z-scored data, not padding: LA volumes are larger than the patch in every axis
    assert (batch["image"] == 0).float().mean() < 0.01
    assert loader.source.cached_bytes > 3 * 148 * 132 * 88 * 4
