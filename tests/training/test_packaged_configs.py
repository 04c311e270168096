"""Configs shipped inside the package: lookup by name or path, errors, `canet configs`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import canet
from canet.cli.main import main
from canet.configs import describe_config, find_config, list_configs, packaged_config
from canet.errors import ConfigError
from canet.training.config import load_config

SHIPPED = ["demo", "la_canet_16", "la_canet_8", "la_sassnet_16", "la_uamt_16", "la_vnet_16", "la_vnet_8", "la_vnet_full"]
PACKAGE = Path(canet.__file__).resolve().parent
REPO = Path(__file__).resolve().parents[2]


def test_the_configs_live_in_the_package_and_nowhere_else() -> None:
    assert list_configs() == SHIPPED
    folder = PACKAGE / "configs"
    assert sorted(p.stem for p in folder.glob("*.yaml")) == SHIPPED
    for name in SHIPPED:
        assert packaged_config(name) == folder / f"{name}.yaml"
    # No second copy at the top of the repository that could drift from the packaged one.
    assert not (REPO / "configs").exists()


def test_find_config_takes_a_name_a_name_with_suffix_or_a_path(tmp_path: Path, monkeypatch) -> None:
    folder = PACKAGE / "configs"
    assert find_config("la_canet_16") == folder / "la_canet_16.yaml"
    assert find_config("la_canet_16.yaml") == folder / "la_canet_16.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("method: vnet\n", encoding="utf-8")
    assert find_config(own) == own and find_config(str(own)) == own
    # A file in the working folder wins over a packaged config of the same file name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "la_vnet_8.yaml").write_text("method: canet\niterations: 3\n", encoding="utf-8")
    assert find_config("la_vnet_8.yaml") == Path("la_vnet_8.yaml")
    assert load_config("la_vnet_8.yaml").iterations == 3
    # A bare name is always the packaged one.
    assert find_config("la_vnet_8") == folder / "la_vnet_8.yaml"
    assert load_config("la_vnet_8").iterations == 6000


def test_load_config_by_name_equals_loading_the_file() -> None:
    for name in SHIPPED:
        assert load_config(name) == load_config(PACKAGE / "configs" / f"{name}.yaml")


KNOWN = "packaged configs: " + ", ".join(SHIPPED)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("la_canet_32", f"unknown config 'la_canet_32'; {KNOWN}"),
        ("la_canet_32.json", f"unknown config 'la_canet_32.json'; {KNOWN}"),
        ("la_canet_32.yaml", f"config file not found: la_canet_32.yaml; {KNOWN}"),
        (f"somewhere{os.sep}la_canet_16", f"config file not found: somewhere{os.sep}la_canet_16; {KNOWN}"),
        (f"somewhere{os.sep}la_canet_16.yaml", f"config file not found: somewhere{os.sep}la_canet_16.yaml; {KNOWN}"),
    ],
)
def test_unknown_names_and_missing_files_list_the_known_names(given: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        find_config(given)
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        load_config(given)
    assert str(err.value) == message


def test_train_with_an_unknown_config_name_is_one_line(capsys) -> None:
    assert main(["train", "--config", "la_canet_99", "--data", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: unknown config 'la_canet_99'; {KNOWN}\n"


def test_every_config_starts_with_a_one_line_description() -> None:
    for name in SHIPPED:
        text = packaged_config(name).read_text(encoding="utf-8")
        first = text.splitlines()[0]
        assert first.startswith("# ") and len(first) <= 100, (name, first)
        assert describe_config(packaged_config(name)) == first[2:].strip()


def test_describe_config_takes_the_first_comment_line(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("\n#   First line.  \n# second line\nmethod: vnet\n", encoding="utf-8")
    assert describe_config(path) == "First line."
    path.write_text("method: vnet\n# a comment later\n", encoding="utf-8")
    assert describe_config(path) == ""


def test_canet_configs_lists_names_and_descriptions(capsys) -> None:
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == SHIPPED
    width = max(map(len, SHIPPED))
    expected = {
        "la_canet_16": "CA-Net on LA with 16 labeled + 64 unlabeled training cases: the paper's recipe.",
        "la_vnet_full": "Supervised V-Net on LA with all 80 training cases labeled (the upper bound).",
    }
    for line in lines:
        name = line.split()[0]
        assert line == f"{name:<{width}}  {describe_config(packaged_config(name))}"
        if name in expected:
            assert line[width + 2 :] == expected[name]
    assert main(["configs", "--paths"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith(f"[{PACKAGE / 'configs' / 'la_canet_16.yaml'}]")
