"""tests/conftest.py's ``differs_twice``: one retry of a whole comparison, a fault that repeats fails."""

from __future__ import annotations

from pathlib import Path

import pytest


def _scenario(answers: list[list[str]], seen: list[Path]):
    def scenario(folder: Path) -> list[str]:
        seen.append(folder)
        return answers[len(seen) - 1]

    return scenario


def test_a_clean_first_try_is_not_repeated(twice, tmp_path: Path) -> None:
    seen: list[Path] = []
    twice(_scenario([[]], seen), tmp_path, "a and b")
    assert seen == [tmp_path / "first"]


def test_a_mismatch_that_repeats_fails_and_reports_both_tries(twice, tmp_path: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(AssertionError, match=r"a and b differed in 2 places \(\['x', 'y'\]\); "
                                             r"a second try differs again in 1 places \(\['z'\]\)"):
        twice(_scenario([["x", "y"], ["z"]], seen), tmp_path, "a and b")
    assert seen == [tmp_path / "first", tmp_path / "second"]


def test_a_mismatch_that_does_not_repeat_passes_with_a_warning_and_the_aside(twice, tmp_path: Path) -> None:
    seen: list[Path] = []
    asides: list[tuple[Path, Path]] = []

    def aside(first: Path, second: Path) -> str:
        asides.append((first, second))
        return "the baselines agree"

    with pytest.warns(UserWarning, match=r"a and b differed in 1 places \(\['x'\]\); the baselines agree; "
                                         r"a second try matched"):
        twice(_scenario([["x"], []], seen), tmp_path, "a and b", aside=aside)
    assert asides == [(tmp_path / "first", tmp_path / "second")]
