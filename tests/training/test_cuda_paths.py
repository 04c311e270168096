"""The GPU paths on a GPU: skipped without CUDA (their CPU halves are tested beside them, with mocks).

See test_profiles.py (the switches each profile names), test_distributed.py (the
device per LOCAL_RANK, cuda:N selected), test_resume_device.py (resume on another
device type), tests/models (the SDF head in fp32 under autocast).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from canet.device import BackendFlags
from canet.training.trainer import Trainer, resume

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
QUIET = {"quiet": True, "log": lambda m: None}


@pytest.mark.parametrize(("profile", "tf32", "benchmark", "deterministic"),
                         [("exact", False, False, True), ("fast", True, True, False)])
def test_profile_switches_on_a_gpu(make_config, tmp_path: Path, profile, tf32, benchmark, deterministic) -> None:
    BackendFlags(tf32=not tf32, benchmark=not benchmark, deterministic=not deterministic).apply()
    trainer = Trainer(make_config("canet", train__device="cuda", train__profile=profile), tmp_path / "run", **QUIET)
    trainer.setup()
    trainer.loader.close()
    now = BackendFlags.current()
    assert (now["cudnn_tf32"], now["matmul_tf32"]) == (tf32, tf32)
    assert (now["cudnn_benchmark"], now["deterministic"]) == (benchmark, deterministic)


def test_fast_gpu_run_keeps_its_layout_and_fp32_sdf(make_config, tmp_path: Path) -> None:
    cfg = make_config("canet", iterations=2, train__device="cuda", train__profile="fast",
                      validation__every=1, validation__split="labeled", validation__max_cases=1)
    trainer = Trainer(cfg, tmp_path / "run", **QUIET)
    trainer.run()
    assert trainer.cfg.train.amp == "bf16"
    for p in trainer.generator.parameters():
        if p.dim() == 5 and p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last_3d):
            assert p.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 1, 32, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        out = trainer.generator.eval()(x)
    assert out.seg.dtype == torch.bfloat16 and out.sdf.dtype == torch.float32


def test_cpu_run_resumes_on_the_gpu_and_back(make_config, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    Trainer(make_config("canet", iterations=1), run, **QUIET).run()
    capsys.readouterr()
    assert resume(run, iterations=2, overrides={"train.device": "cuda"}, quiet=True).iteration == 2
    assert "written on cpu and it now resumes on cuda" in capsys.readouterr().out
    assert resume(run, iterations=3, overrides={"train.device": "cpu"}, quiet=True).iteration == 3
    assert "written on cuda and it now resumes on cpu" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_one_process_on_cuda_1_keeps_gpu_0_free(make_config, tmp_path: Path) -> None:
    trainer = Trainer(make_config("canet", iterations=1, train__device="cuda:1"), tmp_path / "run", **QUIET)
    trainer.run()
    assert torch.cuda.current_device() == 1
