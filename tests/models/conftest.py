"""Fixtures of the model tests: the independent original-network module and the reference tsv files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

HERE = Path(__file__).resolve().parent
REFERENCE_DIR = HERE.parents[1].parent / "shared" / "reference"


def _load_original_reference() -> ModuleType:
    name = "canet_tests_models_original_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "original_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def original_ref() -> ModuleType:
    """tests/models/original_reference.py (independent re-statement of the original networks)."""
    return _load_original_reference()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference with the original state-dict layouts; skips where it is absent."""
    if not (REFERENCE_DIR / "canet_generator_state_dict.tsv").is_file():
        pytest.skip(f"reference layouts not found at {REFERENCE_DIR} (only present beside the repository)")
    return REFERENCE_DIR
