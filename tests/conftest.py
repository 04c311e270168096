"""Shared fixtures: the real LA data (skipped, with the reason, only where it is absent); torch's switches kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LA_ROOT = REPO.parent / "shared" / "data" / "LA"

torch.set_num_threads(2)


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
