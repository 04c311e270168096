"""The wheel works on its own: built, installed with --no-deps into an empty folder, run elsewhere.

The wheel is built offline (``pip wheel --no-build-isolation``: setuptools and wheel
come from the test extra) from a copy of the sources, so the repository is left
untouched. It is installed with ``pip install --no-deps --target DIR`` and every
command runs from a folder outside the repository with ``python -S``: without
``site``, the editable install's import hook (which would quietly fall back to the
repository for a module the wheel lacks) is not loaded, and ``PYTHONPATH`` is DIR
followed by the folders where this interpreter finds torch and the other
dependencies (none of which holds a ``canet`` package). The ``canet`` console
script pip writes into ``DIR/bin`` runs too, as a user would run it, and must
find the wheel's configs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _copy_sources(dst: Path) -> Path:
    """pyproject.toml, README.md and canet/ (without caches) under ``dst``."""
    dst.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dst / name)
    shutil.copytree(REPO / "canet", dst / "canet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def _dependency_path(install: Path) -> str:
    """``PYTHONPATH``: ``install`` first, then this interpreter's folders that hold no canet."""
    keep = [str(install)]
    for entry in sys.path:
        if not entry or not Path(entry).is_dir():
            continue
        p = Path(entry).resolve()
        if p == REPO or (p / "canet").exists():  # the repository, or another canet
            continue
        keep.append(str(p))
    return os.pathsep.join(keep)


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_wheel_alone_lists_configs_and_trains(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = _run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src), "-w", str(wheels)],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = wheels.glob("canet-*.whl")

    # Every module and config of the sources is in the wheel.
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        p.relative_to(src).as_posix()
        for p in (src / "canet").rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml")
    }
    assert "canet/configs/la_canet_16.yaml" in expected and "canet/configs/__init__.py" in expected
    assert sorted(expected - names) == []
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)

    target = tmp_path / "site"
    install = _run(
        [*pip, "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    shutil.rmtree(src)  # nothing of the copied sources may be needed any more

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(outside),
        "PYTHONPATH": _dependency_path(target),
        "OMP_NUM_THREADS": "2",
        "MPLBACKEND": "Agg",
    }
    py = [sys.executable, "-S"]
    cli = [*py, "-m", "canet.cli.main"]

    where = _run(
        [*py, "-c", "import canet, canet.configs, canet.cli.main as m; print(canet.__file__); print(m.__file__)"],
        outside,
        env,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    for line in where.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(target.resolve()), line

    helped = _run([*cli, "--help"], outside, env)
    assert helped.returncode == 0, helped.stderr[-2000:]
    assert "configs" in helped.stdout and "train" in helped.stdout

    # the console script pip wrote for the wheel's entry point, run as a user runs it
    script = target / "bin" / "canet"
    assert script.is_file(), sorted(p.name for p in (target / "bin").iterdir()) if (target / "bin").is_dir() else []
    assert script.read_text().startswith("#!")
    scripted = _run([str(script), "configs", "--paths"], outside, env)
    assert scripted.returncode == 0, scripted.stderr[-2000:]
    shipped_by_script = Path(scripted.stdout.splitlines()[1].rsplit("[", 1)[1].rstrip("]"))
    assert shipped_by_script.resolve() == (target / "canet" / "configs" / "la_canet_16.yaml").resolve()
    bad = _run([str(script), "train", "--config", "no_such_config"], outside, env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1, bad.stderr

    listed = _run([*cli, "configs", "--paths"], outside, env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = listed.stdout.splitlines()
    assert [r.split()[0] for r in rows] == [
        "demo", "la_canet_16", "la_canet_8", "la_sassnet_16", "la_uamt_16", "la_vnet_16", "la_vnet_8", "la_vnet_full"
    ]  # fmt: skip
    shipped = Path(rows[1].rsplit("[", 1)[1].rstrip("]"))
    assert shipped.resolve() == (target / "canet" / "configs" / "la_canet_16.yaml").resolve()

    made = _run([*cli, "make-synthetic", "data", "--cases", "4", "--test", "1", "--shape", "32", "32", "32"], outside, env)
    assert made.returncode == 0, made.stderr[-2000:]
    trained = _run(
        [
            *cli, "train", "--config", "la_canet_16", "--data", "data", "--out", "run",
            "--iterations", "2", "--patch-size", "32", "32", "32", "--labeled", "2",
            "--num-workers", "0", "--device", "cpu", "--quiet",
            "--set", "model.n_filters=4", "--set", "discriminator.ndf=4", "--set", "train.checkpoint_every=1",
        ],  # fmt: skip
        outside,
        env,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert "finished 2 iterations" in trained.stdout
    checked = _run(
        [
            *py, "-c",
            "from canet.checkpoint import load_checkpoint; p = load_checkpoint('run/checkpoints/last.pt'); "
            "print(p['iteration'], p['config']['method'], p['config']['model']['n_filters'])",
        ],  # fmt: skip
        outside,
        env,
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert checked.stdout.split() == ["2", "canet", "4"]
