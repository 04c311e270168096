"""The checkpoint walker the resume tests rely on finds every kind of difference, and only those."""

from __future__ import annotations

import torch


def _tree() -> dict:
    return {"generator": {"w": torch.ones(2, 3), "n": torch.tensor(4)},
            "optimizers": [{"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.01}]}],
            "iteration": 8}


def test_identical_trees_have_no_differences(tree_diff) -> None:
    assert tree_diff(_tree(), _tree()) == []


def test_one_changed_bit_is_found_with_its_path_and_both_nodes(tree_diff) -> None:
    a, b = _tree(), _tree()
    b["generator"]["w"][1, 2] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    [(where, x, y)] = tree_diff(a, b, "ckpt")
    assert where == "ckpt.generator.w"
    assert x is a["generator"]["w"] and y is b["generator"]["w"]


def test_dtype_shape_keys_lengths_and_plain_values_count(tree_diff) -> None:
    cases = {
        ".generator.n": lambda t: t["generator"].update(n=torch.tensor(4.0)),  # same value, other dtype
        ".generator.w": lambda t: t["generator"].update(w=torch.ones(3, 2)),  # same values, other shape
        ".optimizers[0].state": lambda t: t["optimizers"][0]["state"].update({1: {}}),  # extra key
        ".optimizers[0].param_groups": lambda t: t["optimizers"][0]["param_groups"].append({}),
        ".optimizers[0].param_groups[0].lr": lambda t: t["optimizers"][0]["param_groups"][0].update(lr=0.02),
        ".iteration": lambda t: t.update(iteration=[8]),  # another type
    }
    for expected, change in cases.items():
        b = _tree()
        change(b)
        assert [where for where, _, _ in tree_diff(_tree(), b)] == [expected]


def test_differences_come_in_walking_order(tree_diff) -> None:
    b = _tree()
    b["iteration"] = 9
    b["generator"]["w"] = torch.zeros(2, 3)
    assert [where for where, _, _ in tree_diff(_tree(), b)] == [".generator.w", ".iteration"]


def test_difference_size_weighs_float_tensors_and_calls_anything_else_infinite(diff_size) -> None:
    assert diff_size(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5])) == 0.5
    assert diff_size(torch.tensor([1.0]), torch.tensor([1.0], dtype=torch.float64)) == float("inf")
    assert diff_size(torch.ones(2), torch.ones(3)) == float("inf")
    assert diff_size(torch.tensor(3), torch.tensor(4)) == float("inf")  # integer tensors: no rounding
    assert diff_size(0.01, 0.02) == float("inf")
