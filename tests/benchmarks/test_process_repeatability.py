"""benchmarks/process_repeatability.py: the tally, and a real two-process run."""

from __future__ import annotations

import json
from pathlib import Path

import process_repeatability as rep  # benchmarks/ is on sys.path (conftest.py)
import pytest


def test_tally_counts_processes_per_digest_most_common_first() -> None:
    results = [{"sin": "a", "mm": "x"}, {"sin": "b", "mm": "x"}, {"sin": "b", "mm": "x"}]
    counts = rep.tally(results)
    assert counts == {"sin": {"b": 2, "a": 1}, "mm": {"x": 3}}
    assert list(counts["sin"]) == ["b", "a"]


def test_digest_tells_one_changed_bit_and_the_order_of_tensors() -> None:
    import torch

    a, b = torch.ones(4), torch.zeros(4)
    c = a.clone()
    c[3] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert rep._digest(a, b) == rep._digest(a.clone(), b.clone())
    assert rep._digest(a, b) != rep._digest(c, b)
    assert rep._digest(a, b) != rep._digest(b, a)


@pytest.mark.slow
def test_two_processes_give_one_result_per_probe(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rep.json"
    assert rep.main(["--processes", "2", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["processes"] == 2 and record["started"] <= record["finished"]
    assert set(record["probes"]) == set(rep._probes()) == {
        "sin", "tanh", "sigmoid", "gelu", "mm_qkv", "mm_mlp", "conv3d", "transv"}
    assert all(sum(d.values()) == 2 for d in record["probes"].values())
    assert "2 processes" in capsys.readouterr().out


def test_fewer_than_two_processes_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        rep.main(["--processes", "1"])
    assert exc.value.code == 2
    assert "--processes must be at least 2, got 1" in capsys.readouterr().err
