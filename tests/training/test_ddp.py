"""DistributedDataParallel with two CPU processes on the gloo backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from canet.checkpoint import load_checkpoint
from canet.models import load_model
from canet.training.config import save_config

SCRIPT = """
import sys, torch
from canet.training.config import load_config
from canet.training.trainer import Trainer

config, out, rank = sys.argv[1], sys.argv[2], sys.argv[3]
trainer = Trainer(load_config(config), out, quiet=True)
trainer.setup()
init = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
trainer.run()
d = trainer.discriminator
torch.save({"init": init, "generator": trainer.generator.state_dict(),
            "discriminator": d.state_dict() if d is not None else {},
            "world": trainer.dist.world_size, "rank": trainer.dist.rank},
           f"{out}/../rank{rank}.pt")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# vnet: its SDF head feeds no loss, so the trainer freezes it and DDP runs without
# find_unused_parameters (it would fail on an unused parameter that takes gradients).
@pytest.mark.parametrize("method", ["canet", "vnet"])
def test_two_process_gloo_training(make_config, tmp_path: Path, method: str) -> None:
    script = tmp_path / "ddp_rank.py"
    script.write_text(SCRIPT)
    cfg_path = tmp_path / "cfg.yaml"
    extra = {"data__labeled": 4} if method == "vnet" else {}  # 2 ranks x 2 labeled rows
    save_config(make_config(method, iterations=2, data__num_workers=0, **extra), cfg_path)
    port = free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(cfg_path), str(tmp_path / "run"), str(rank)],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["world"], r0["rank"], r1["rank"]) == (2, 0, 1)
    # Gradients are averaged across ranks, so both replicas hold the same weights...
    for key in ("generator", "discriminator"):
        for k, v in r0[key].items():
            if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue  # BatchNorm statistics are per rank (no SyncBatchNorm on the CPU)
            assert torch.equal(v, r1[key][k]), f"{key}.{k}"
    # ... which training changed.
    assert any(not torch.equal(v, r0["init"][k]) for k, v in r0["generator"].items())

    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert payload["world_size"] == 2 and payload["iteration"] == 2
    assert len(payload["ranks"]) == 2
    assert [r["loader"]["batches_drawn"] for r in payload["ranks"]] == [2, 2]
    assert not torch.equal(payload["ranks"][0]["rng"]["torch"], payload["ranks"][1]["rng"]["torch"])
    for k, v in load_model(tmp_path / "run" / "checkpoints" / "last.pt").state_dict().items():
        assert torch.equal(v, r0["generator"][k])
    rows = (tmp_path / "run" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one row per iteration, written by rank 0 only


GLOBAL_SCRIPT = """
import json, sys
from canet.training.config import load_config
from canet.training.trainer import Trainer

config, out, rank = sys.argv[1], sys.argv[2], sys.argv[3]
lines = []
trainer = Trainer(load_config(config), out, quiet=True, log=lines.append)
trainer.setup()
sizes = [trainer.loader.sampler.batch_size, trainer.loader.sampler.labeled_bs]
rows = [int(next(trainer.loader)["image"].shape[0])]
trainer.loader.close()
trainer.run()
with open(f"{out}/../rank{rank}.json", "w") as fh:
    json.dump({"sizes": sizes, "rows": rows, "lines": lines}, fh)
"""


def test_global_batch_keeps_the_configs_rows_over_two_processes(make_config, tmp_path: Path) -> None:
    """data.global_batch: two gloo processes take 2 rows (1 labeled) each, 4 (2 labeled) in all."""
    import json

    script = tmp_path / "global_rank.py"
    script.write_text(GLOBAL_SCRIPT)
    cfg_path = tmp_path / "cfg.yaml"
    save_config(make_config("canet", iterations=1, data__batch_size=4, data__labeled_bs=2,
                            data__global_batch=True), cfg_path)
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(cfg_path), str(tmp_path / "run"), str(rank)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["sizes"] for r in ranks] == [[2, 1], [2, 1]]
    assert [r["rows"] for r in ranks] == [[2], [2]]
    said = "batch: 2 rows per process (1 labeled) x 2 processes = 4 rows per iteration (2 labeled)"
    assert said in ranks[0]["lines"]  # rank 0 says it at the start
    # no batch warning (the tiny config's teacher.passes, which canet does not use, is named)
    assert [line for line in ranks[0]["lines"] if "warning" in line] == [
        "warning: method 'canet' does not use teacher.passes (2): it has no effect on this run"]
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["batch"] == {"per_process": 2, "labeled_per_process": 1, "processes": 2, "global": 4,
                            "global_labeled": 2, "global_batch_setting": True}
    assert env["world_size"] == 2
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert [r["loader"]["batch_size"] for r in payload["ranks"]] == [2, 2]
