"""benchmarks/gpu_probe.py: its verdicts, and one whole run at tiny settings on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gpu_probe as probe  # benchmarks/ is on sys.path (conftest.py)
import pytest

from canet.data import write_synthetic_dataset
from canet.training.profiles import fast_workers

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_probe.py"


def test_side_by_side_verdict_numbers() -> None:
    # 0.06 + 0.03 s/it one after the other; 0.07 and 0.05 s/it together.
    v = probe.side_by_side_verdict((0.06, 0.03), (0.07, 0.05), ("a", "b"))
    assert v["speedup_for_both"] == pytest.approx(0.09 / 0.07)
    assert v["run_side_by_side"] is True
    assert v["its_per_min_alone"] == pytest.approx({"a": 1000.0, "b": 2000.0})
    assert v["its_per_min_together"]["total"] == pytest.approx(60 / 0.07 + 60 / 0.05)
    # Together each is twice as slow: no gain, so one after the other.
    v = probe.side_by_side_verdict((0.06, 0.03), (0.12, 0.06), ("a", "b"))
    assert v["speedup_for_both"] == pytest.approx(0.75) and v["run_side_by_side"] is False


def test_compile_verdict_numbers() -> None:
    fast = {"sec_per_it": 0.050, "first_step_s": 2.0}
    # Saves 10 ms x 6000 = 60 s for 40 s of compilation: pays off.
    v = probe.compile_verdict(fast, {"sec_per_it": 0.040, "first_step_s": 42.0}, 6000)
    assert v["compile_pays_off"] is True
    assert v["compile_saving_s_per_run"] == pytest.approx(60.0)
    assert v["compile_cost_s"] == pytest.approx(40.0)
    # Saves 60 s for 100 s: it does not.
    assert probe.compile_verdict(fast, {"sec_per_it": 0.040, "first_step_s": 102.0}, 6000)[
        "compile_pays_off"
    ] is False


def test_compile_d_verdict_numbers() -> None:
    v = probe.compile_d_verdict({"sec_per_it": 0.050}, {"sec_per_it": 0.055})
    assert v["compile_d_forward_pays_off"] is True
    assert v["compile_d_forward_saving_s_per_it"] == pytest.approx(0.005)
    assert probe.compile_d_verdict({"sec_per_it": 0.060}, {"sec_per_it": 0.055})[
        "compile_d_forward_pays_off"
    ] is False


def test_budget_starts_nothing_that_would_end_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(probe.time, "perf_counter", lambda: now[0])
    budget = probe.Budget(150.0)
    assert budget.allows(1.0)  # nothing measured yet: only the clock counts
    now[0] += 40.0
    budget.record_train(40.0)
    budget.record_train(30.0)
    assert budget.longest_train == 40.0  # the longest training job is the estimate
    assert budget.allows(1.0) and budget.allows(2.5)  # 40 + 40 and 40 + 2.5 x 40 = 140 <= 150
    now[0] += 20.0
    assert not budget.allows(2.5)  # 60 + 100 > 150: the side-by-side pair would overrun
    assert budget.allows(1.0) and budget.allows(0.0)  # 60 + 40
    now[0] += 91.0
    assert not budget.allows(0.0)  # 151 s: past the budget


def test_la_subset_root_keeps_present_cases_in_list_order(tmp_path: Path) -> None:
    root = tmp_path / "LA"
    ids = ["c1", "c2", "c3", "c4"]
    for i in ("c1", "c3", "c4", "t1"):
        (root / probe.LA_FOLDER / i).mkdir(parents=True)
        (root / probe.LA_FOLDER / i / "mri_norm2.h5").write_bytes(b"")
    (root / "train.list").write_text("\n".join(ids) + "\n")
    (root / "test.list").write_text("t1\nt2\n")
    sub = probe.la_subset_root(root, tmp_path / "sub", n_train=2, n_test=5)
    assert (sub / "train.list").read_text().split() == ["c1", "c3"]  # c2 is not on disk
    assert (sub / "test.list").read_text().split() == ["t1"]
    assert (sub / probe.LA_FOLDER / "c4" / "mri_norm2.h5").is_file()


@pytest.mark.slow
def test_probe_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", n_train=6, n_test=1, seed=2, shape=(40, 40, 32))
    out = tmp_path / "probe.json"
    cmd = [
        sys.executable, str(SCRIPT), "--data", str(data), "--device", "cpu", "--patch", "32", "32", "32",
        "--labeled", "4", "--iterations", "2", "--warmup", "1", "--loader-batches", "2",
        "--infer-cases", "1", "--no-compile", "--set", "model.n_filters=4", "--set", "discriminator.ndf=4",
        "--out", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(proc.stdout) == result
    assert "worker_errors" not in result, result.get("worker_errors")
    assert result["skipped"] == []
    exact, fast = result["train"]["exact"], result["train"]["fast"]
    contiguous = result["train"]["fast-contiguous"]
    assert exact["settings"]["deterministic"] is True and exact["settings"]["channels_last"] is False
    assert fast["settings"]["deterministic"] is False and fast["settings"]["channels_last"] is True
    assert contiguous["settings"]["deterministic"] is False and contiguous["settings"]["channels_last"] is False
    assert fast["settings"]["amp"] == "none"  # bf16 only on CUDA
    assert exact["settings"]["tf32"] is False and fast["settings"]["tf32"] is False  # TF32: CUDA and fast only
    assert exact["sec_per_it"] > 0 and fast["sec_per_it"] > 0 and exact["iterations"] == 2
    for variant in (exact, fast, contiguous):
        assert variant["first_batch_s"] > 0 and variant["first_step_s"] > 0
        assert variant["peak_gpu_mib"] is None and variant["peak_gpu_mib_warmup"] is None  # no GPU
    assert result["fast_speedup"] == pytest.approx(exact["sec_per_it"] / fast["sec_per_it"])
    assert result["channels_last_speedup"] == pytest.approx(contiguous["sec_per_it"] / fast["sec_per_it"])
    assert [r["workers"] for r in result["loader"]] == sorted({2, fast_workers()})
    assert result["loader"][0]["batches_per_s"] > 0
    inf = result["inference"]
    assert inf["reference_s_per_volume"] > 0 and inf["fast_s_per_volume"] > 0
    assert inf["fast_bf16_s_per_volume"] is None and "CUDA" in inf["bf16_skipped"]  # bf16 only on a GPU
    side = result["side_by_side"]
    assert set(side["together"]) == {"la_canet_16", "la_vnet_16"}
    # the verdict follows from the seconds per iteration measured alone and together
    alone = [side["alone"][n]["sec_per_it"] for n in ("la_canet_16", "la_vnet_16")]
    together = [side["together"][n]["sec_per_it"] for n in ("la_canet_16", "la_vnet_16")]
    assert alone[0] == fast["sec_per_it"]  # the config's own fast-profile run
    assert side["speedup_for_both"] == pytest.approx(sum(alone) / max(together))
    assert side["run_side_by_side"] is (side["speedup_for_both"] > 1.05)
    assert side["its_per_min_together"]["total"] == pytest.approx(60 / together[0] + 60 / together[1])
    assert result["environment"]["device"] == "cpu"


def test_the_contiguous_variant_puts_every_weight_in_the_standard_layout(tmp_path: Path) -> None:
    import torch

    from canet.training.trainer import Trainer

    data = write_synthetic_dataset(tmp_path / "data", n_train=4, n_test=0, seed=2, shape=(40, 40, 32))
    args = probe.build_parser().parse_args(
        ["--data", str(data), "--device", "cpu", "--patch", "32", "32", "32", "--labeled", "2", "--workers", "0",
         "--set", "model.n_filters=4", "--set", "discriminator.ndf=4"]
    )
    trainer = Trainer(probe._config(args, "la_canet_16", "fast-contiguous"), tmp_path / "run", quiet=True)
    trainer.setup()
    try:
        nets = [trainer.generator, trainer.discriminator]
        assert trainer.cfg.train.channels_last  # what the fast profile chose ...
        probe.standard_layout(trainer)
        assert not trainer.cfg.train.channels_last  # ... and what the variant measures
        weights = [p for net in nets for p in net.parameters() if p.dim() == 5]
        assert weights and all(p.is_contiguous() for p in weights)
        logs = trainer.train_step(next(trainer.loader), 0)
        assert torch.isfinite(torch.as_tensor(logs["loss"]))
        assert all(p.is_contiguous() for p in weights)
    finally:
        trainer.loader.close()
    with pytest.raises(SystemExit, match="training variant must be one of"):
        probe._config(args, "la_canet_16", "turbo")
