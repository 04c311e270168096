"""Fixtures of the training tests: a tiny synthetic dataset and tiny configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from canet.training.config import Config, apply_overrides, config_from_dict


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic set in the LA layout: 6 training cases of 32^3 voxels and 2 test cases."""
    from canet.data import write_synthetic_dataset

    return write_synthetic_dataset(
        tmp_path_factory.mktemp("synth") / "data", n_train=6, n_test=2, seed=5, shape=(32, 32, 32)
    )


TINY: dict[str, Any] = {
    "seed": 7,
    "iterations": 1,
    "data": {
        "labeled": 2,
        "patch_size": [32, 32, 32],
        "batch_size": 2,
        "labeled_bs": 1,
        "num_workers": 0,
    },
    "model": {"n_filters": 4, "dropout": 0.5},
    "discriminator": {"ndf": 4},
    "teacher": {"passes": 2},
    "train": {"device": "cpu", "log_every": 1, "checkpoint_every": 1, "keep_every": 0},
}


def tiny_config(root: Path, method: str = "canet", **overrides: Any) -> Config:
    """A config for 32^3 patches (Trans-V's transformer on a 2 x 2 x 2 grid) and tiny networks.

    ``overrides`` take dotted keys with ``__`` for the dots (``loss__sdf=False``).
    """
    changes = {"method": method, "data.root": str(root)}
    if method == "vnet":
        changes["data.labeled_bs"] = 2
    changes.update({k.replace("__", "."): v for k, v in overrides.items()})
    return config_from_dict(apply_overrides(TINY, changes))


@pytest.fixture()
def make_config(tiny_data: Path) -> Any:
    """``make_config(method="canet", **overrides)`` -> a tiny :class:`Config` on ``tiny_data``."""

    def make(method: str = "canet", **overrides: Any) -> Config:
        return tiny_config(tiny_data, method, **overrides)

    return make
