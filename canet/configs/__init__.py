"""The training configs shipped inside the package: the paper's recipes, the baselines, the demo.

Each ``<name>.yaml`` in this folder is installed with canet, so ``--config
la_canet_16`` works from any folder, with or without the repository. The first
comment line of a file is its one-line description (``canet configs`` lists
them). :func:`find_config` turns what a user passes to ``--config`` (a packaged
name or a YAML path) into a file.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from canet.errors import ConfigError

#: Suffixes of a config file; ``la_canet_16.yaml`` also names the packaged ``la_canet_16``.
CONFIG_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")


def _folder() -> Path:
    """The installed folder holding the packaged ``*.yaml`` files."""
    return Path(str(resources.files(__name__)))


def list_configs() -> list[str]:
    """Names of the packaged configs (file stems), sorted."""
    return sorted(p.stem for p in _folder().glob("*.yaml"))


def packaged_config(name: str) -> Path:
    """The file of the packaged config ``name`` (``la_canet_16``, no suffix).

    Raises:
        ConfigError: no packaged config has that name; the message lists the known names.
    """
    path = _folder() / f"{name}.yaml"
    if "/" in name or os.sep in name or not path.is_file():
        raise ConfigError(f"unknown config {name!r}; packaged configs: {', '.join(list_configs())}")
    return path


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """The YAML file that ``--config name_or_path`` means.

    An existing file is taken as it is. Otherwise a bare name, with or without
    ``.yaml`` (``la_canet_16``, ``la_canet_16.yaml``), is a packaged config.

    Raises:
        ConfigError: neither a file nor a packaged name (one line, listing the names).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    bare = "/" not in text and os.sep not in text
    stem = path.stem if path.suffix in CONFIG_SUFFIXES else path.name
    if bare and stem in list_configs():
        return _folder() / f"{stem}.yaml"
    if path.is_dir():  # after the packaged names: a folder called demo does not hide the demo's config
        raise ConfigError(f"--config {path} is a folder; give a YAML file or a packaged config name")
    if not bare or path.suffix in CONFIG_SUFFIXES:
        raise ConfigError(f"config file not found: {text}; packaged configs: {', '.join(list_configs())}")
    return packaged_config(text)


def describe_config(path: str | os.PathLike[str]) -> str:
    """The first comment line of a config file, without ``#`` ('' when the file starts otherwise)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            stripped = line.strip()
            if not stripped:
                continue
            return stripped.lstrip("#").strip() if stripped.startswith("#") else ""
    return ""


def config_table() -> list[tuple[str, str]]:
    """``(name, description)`` of every packaged config, sorted by name."""
    return [(name, describe_config(packaged_config(name))) for name in list_configs()]


__all__ = [
    "CONFIG_SUFFIXES",
    "config_table",
    "describe_config",
    "find_config",
    "list_configs",
    "packaged_config",
]
