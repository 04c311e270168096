"""Fixtures of the data tests: small synthetic LA-layout sets and a small copy of real LA cases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from canet.data import LA_CASES_DIR, LA_FILE_NAME, write_synthetic_dataset

SMALL_SHAPE = (40, 40, 24)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training + 2 test synthetic cases of 40 x 40 x 24 (read-only by convention: copy to break)."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "LA", n_train=8, n_test=2,
                                   seed=3, shape=SMALL_SHAPE)


@pytest.fixture()
def synth_copy(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy of ``synth_root`` that a test may damage."""
    return Path(shutil.copytree(synth_root, tmp_path / "LA"))


@pytest.fixture(scope="session")
def la_small(la_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LA folder with the first 3 training and first test case of the real benchmark (copied)."""
    out = tmp_path_factory.mktemp("la_small") / "LA"
    train = (la_root / "train.list").read_text().split()[:3]
    test = (la_root / "test.list").read_text().split()[:1]
    for case_id in [*train, *test]:
        dst = out / LA_CASES_DIR / case_id
        dst.mkdir(parents=True)
        shutil.copyfile(la_root / LA_CASES_DIR / case_id / LA_FILE_NAME, dst / LA_FILE_NAME)
    (out / "train.list").write_text("\n".join(train) + "\n")
    (out / "test.list").write_text("\n".join(test) + "\n")
    return out

