"""canet.errors: the list text of one-line messages."""

from __future__ import annotations

from pathlib import Path

from canet.errors import first_names


def test_first_names_shows_the_first_few_and_marks_the_rest() -> None:
    assert first_names([]) == ""
    assert first_names(["a", "b", "c"]) == "a, b, c"  # exactly three: nothing left out, no mark
    assert first_names(["a", "b", "c", "d"]) == "a, b, c, ..."
    assert first_names((n for n in "abcdefg"), 6) == "a, b, c, d, e, f, ..."
    assert first_names([1, 255]) == "1, 255"  # not only strings
    assert first_names(repr(c) for c in ["x"]) == "'x'"
    assert first_names([Path("a.nii.gz")], 1) == "a.nii.gz"
