"""Shared fixtures: the real LA data (skipped, with the reason, only where it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LA_ROOT = REPO.parent / "shared" / "data" / "LA"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def la_root() -> Path:
    """Path of the real LA benchmark; skips the test where ../shared/data/LA is absent."""
    if not (LA_ROOT / "train.list").is_file():
        pytest.skip(f"real LA data not found at {LA_ROOT} (only present beside the repository)")
    return LA_ROOT
