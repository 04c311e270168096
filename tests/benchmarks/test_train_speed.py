"""benchmarks/train_speed.py: its variants set the trainer up as they say (nothing is timed here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import train_speed  # benchmarks/ is on sys.path (conftest.py)

from canet.data import write_synthetic_dataset


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("speed"), n_train=4, n_test=0, seed=0, shape=(40, 40, 40))


def test_variants_compile_what_they_name(root: Path, tmp_path: Path) -> None:
    compiled = torch._dynamo.eval_frame.OptimizedModule
    torch._dynamo.reset()
    seen = {}
    for variant in train_speed.VARIANTS:
        trainer = train_speed.build_trainer(root, tmp_path / variant, (32, 32, 32), variant, compile_=True,
                                             labeled=2)  # 2 labeled + 2 unlabeled of the 4 cases
        seen[variant] = (isinstance(trainer.g_train, compiled), isinstance(trainer.g_eval, compiled),
                         trainer.cfg.train.channels_last)
        trainer.loader.close()
    assert seen == {
        "plain": (False, False, False),
        "loader-sdm": (False, False, False),
        "loader-sdm+channels-last": (False, False, True),
        "optimized": (True, True, True),  # train.compile compiles the D step's forward too
        "optimized+eager-d": (True, False, True),
        "optimized+reuse": (True, False, True),  # no second forward to compile
    }
    with pytest.raises(ValueError, match="variant must be one of"):
        train_speed.build_trainer(root, tmp_path / "x", (32, 32, 32), "turbo", compile_=True)
    torch._dynamo.reset()


def test_worker_trains_on_a_given_dataset(root: Path) -> None:
    # --data: the trainer reads that folder's cases (here 2 labeled of the 4) instead of writing synthetic ones.
    result = train_speed.worker((32, 32, 32), "loader-sdm+channels-last", iters=1, warmup=1, count_flops=False,
                                compile_=False, data=root, labeled=2)
    assert result["variant"] == "loader-sdm+channels-last" and result["patch"] == [32, 32, 32]
    assert result["median_s"] > 0 and result["first_step_s"] > 0
    with pytest.raises(Exception, match="labeled"):  # more labeled cases than the folder holds
        train_speed.worker((32, 32, 32), "plain", iters=1, warmup=1, count_flops=False, compile_=False,
                           data=root, labeled=16)
