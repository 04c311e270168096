"""Shared fixtures: the real LA data (skipped, with the reason, only where it is absent); torch's switches kept;
the checkpoint walker (`tree_diff`) and the one-retry comparison of whole runs (`twice`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LA_ROOT = REPO.parent / "shared" / "data" / "LA"

torch.set_num_threads(2)

Difference = tuple[str, Any, Any]


def tree_differences(a: Any, b: Any, where: str = "") -> list[Difference]:
    """Where two nested checkpoint contents differ, in order: ``(path, a's node, b's node)``.

    Dicts, lists and tuples are walked; tensors are equal only with the same dtype,
    shape and bits; other leaves compare with ``==``. A structural difference (other
    keys, another length, another type) is reported once, at the node where it
    appears. Empty when the two are identical. Each test applies its own rule to
    what comes back (bit for bit, or a rounding allowance).
    """
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [(where, a, b)]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [(where, a, b)]
        return [d for k in a for d in tree_differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [(where, a, b)]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tree_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [(where, a, b)]


def difference_size(a: Any, b: Any) -> float:
    """How far apart two differing nodes are: the largest absolute difference of two float
    tensors of the same dtype and shape, ``inf`` for anything else (a rounding allowance never covers it)."""
    comparable = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_floating_point()
                  and a.dtype == b.dtype and a.shape == b.shape)
    return (a.double() - b.double()).abs().max().item() if comparable else math.inf


@pytest.fixture(scope="session")
def diff_size() -> Callable[[Any, Any], float]:
    """:func:`difference_size`, to weigh what :func:`tree_differences` found."""
    return difference_size


@pytest.fixture(scope="session")
def tree_diff() -> Callable[..., list[Difference]]:
    """:func:`tree_differences`, for tests that compare checkpoints."""
    return tree_differences


def differs_twice(
    scenario: Callable[[Path], list[str]], folder: Path, what: str,
    aside: Callable[[Path, Path], str] | None = None,
) -> None:
    """Fail when ``scenario`` finds differences in two tries; warn when only the first does.

    ``scenario(subfolder)`` runs a whole comparison (for example an interrupted run
    against an uninterrupted one) in a fresh ``subfolder`` and returns what differed
    (empty: nothing). On a VM a process now and then computes other floating-point
    bits than the next (docs/RESULTS.md, "Bit-for-bit resume"), which training grows
    from the last bit to 1e-3 in a few steps; a real fault (a wrong restore) repeats.
    So a first mismatch is tried once more in ``folder/"second"``; a second one fails
    the test, reporting both, and a clean second try passes it with a warning that
    reports the first. ``aside(first, second)``, if given, adds a sentence about the
    two tries' folders to the report (for example whether their baselines agree).
    """
    first = scenario(folder / "first")
    if not first:
        return
    second = scenario(folder / "second")
    report = f"{what} differed in {len(first)} places ({first[:3]})"
    if aside is not None:
        report += f"; {aside(folder / 'first', folder / 'second')}"
    assert not second, f"{report}; a second try differs again in {len(second)} places ({second[:3]})"
    warnings.warn(f"{report}; a second try matched", stacklevel=2)


@pytest.fixture(scope="session")
def twice() -> Callable[..., None]:
    """:func:`differs_twice`, for tests that compare whole runs."""
    return differs_twice


@pytest.fixture(autouse=True)
def _keep_torch_switches() -> Iterator[None]:
    """Each test leaves torch's global TF32 / determinism / benchmark switches as it found them."""
    from canet.device import BackendFlags

    before = BackendFlags.current()
    yield
    BackendFlags.restore(before)


@pytest.fixture(scope="session")
def la_root() -> Path:
    """Path of the real LA benchmark; skips the test where ../shared/data/LA is absent."""
    if not (LA_ROOT / "train.list").is_file():
        pytest.skip(f"real LA data not found at {LA_ROOT} (only present beside the repository)")
    return LA_ROOT
