"""Config schema: YAML loading, validation errors, overrides, method defaults, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from canet.errors import ConfigError
from canet.training.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    resolve,
    save_config,
)
from canet.training.demo import demo_config
from canet.training.methods import unused_keys_warning


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optimiser": {"lr": 0.1}}, "^unknown config key 'optimiser'; did you mean 'optimizer'\\?$"),
        ({"optimizer": {"lrate": 0.1}}, "^unknown config key 'optimizer.lrate'$"),  # nothing close enough
        ({"model": {"nfilters": 4}}, "^unknown config key 'model.nfilters'; did you mean 'model.n_filters'\\?$"),
        (
            {"data": {"patch_size": [100, 112, 80]}},
            r"patch_size must be 3 positive multiples of 16, got \[100, 112, 80\]",
        ),
        ({"data": {"patch_size": [112, 112]}}, r"data.patch_size must be a list of 3 integers, got \[112, 112\]"),
        ({"method": "fixmatch"}, "method must be one of canet, sassnet, vnet, mt, uamt, got 'fixmatch'"),
        ({"iterations": 0}, "iterations must be >= 1, got 0"),
        ({"iterations": "many"}, "iterations must be an integer, got 'many'"),
        ({"seed": 1.5}, "seed must be an integer, got 1.5"),
        ({"seed": -1}, r"seed must be in 0..4294967295 \(2\*\*32 - 1\), got -1"),
        ({"seed": 10**17}, r"seed must be in 0..4294967295 \(2\*\*32 - 1\), got 100000000000000000"),
        ({"model": {"transformer": "yes please"}}, "model.transformer must be true/false or null"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr must be > 0, got -1.0"),
        ({"optimizer": {"lr": float("inf")}}, "optimizer.lr must be a finite number, got inf"),
        ({"loss": {"beta": 1e400}}, "loss.beta must be a finite number, got inf"),  # YAML's 1e400
        ({"loss": {"beta": float("nan")}}, "loss.beta must be a finite number, got nan"),
        ({"optimizer": {"momentum": 5}}, r"optimizer.momentum must be in \[0, 1\), got 5.0"),
        ({"optimizer": {"milestones": [3800, 2500]}}, "optimizer.milestones must be increasing"),
        ({"data": {"labeled_bs": 4, "batch_size": 4}}, "method 'canet' needs unlabeled cases in every batch"),
        ({"method": "vnet"}, r"method 'vnet' trains on labeled cases only: data.labeled_bs must equal data.batch_size \(4\), got 2"),
        ({"method": "vnet", "data": {"labeled_bs": 4}, "model": {"transformer": True}}, "model.transformer applies to method 'canet' only"),
        ({"method": "mt", "loss": {"adversarial": True}}, "loss.adversarial applies to methods 'canet' and 'sassnet' only"),
        ({"train": {"amp": "fp8"}}, "train.amp must be one of none, bf16, fp16, got 'fp8'"),
        ({"train": {"device": "tpu"}}, "train.device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"validation": {"split": "train"}}, "validation.split must be one of validation, test, labeled"),
        ({"teacher": {"ema_decay": 1.0}}, r"teacher.ema_decay must be in \[0, 1\), got 1.0"),
        ({"data": 3}, "config key 'data' is a section and must be a mapping, got 3"),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(data)
    assert "\n" not in str(info.value)


def test_yaml_file_errors(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"^--config .* is a folder; give a YAML file or a packaged config name$"):
        load_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # a folder named like a packaged config does not hide it
    assert load_config("demo").method == "canet"
    with pytest.raises(ConfigError, match=r"cannot parse .* as YAML \(line 3\)"):
        load_config(write(tmp_path, "method: canet\ndata: [1, 2\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="unknown config key 'optimiser.lr'; did you mean 'optimizer.lr'"):
        load_config(write(tmp_path, "method: canet\n"), ["optimiser.lr=0.1"])
    (tmp_path / "latin1.yaml").write_bytes(b"\xff\xfe method: canet\n")
    with pytest.raises(ConfigError, match=r"^cannot read .*latin1.yaml: it is not UTF-8 text$"):
        load_config(tmp_path / "latin1.yaml")
    # A section written as a list (or a number) is refused also when an override touches it; the
    # override used to replace it by a mapping of its own, dropping the file's keys without a word.
    listed = write(tmp_path, "method: vnet\ndata:\n- labeled: 2\n- num_workers: 0\n")
    for overrides in ([], ["data.root=/x"], ["data.labeled_bs=4"], ["data={root: /x}"]):
        with pytest.raises(ConfigError, match=r"config key 'data' is a section and must be a mapping, got \[\{"):
            load_config(listed, overrides)
    with pytest.raises(ConfigError, match="config key 'train' is a section and must be a mapping, got 5"):
        load_config(write(tmp_path, "train: 5\n"), ["train.device=cpu"])


def test_a_key_written_twice_is_refused_not_replaced(tmp_path: Path) -> None:
    # YAML keeps the last of two keys: this ablation used to train the full method without a word.
    twice = write(tmp_path, "method: canet\nloss: {sdf: false, adversarial: false}\nloss: {beta: 0.5}\n")
    with pytest.raises(ConfigError, match=r"^.*\.yaml: key 'loss' appears twice \(lines 2 and 3\); keep one$"):
        load_config(twice)
    nested = write(tmp_path, "optimizer:\n  lr: 0.1\n  momentum: 0.5\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r"key 'lr' appears twice \(lines 2 and 4\)"):
        load_config(nested)
    with pytest.raises(ConfigError, match=r"the value of --set 'data=\{root: a, root: b\}': key 'root' appears twice"):
        load_config(None, ["data={root: a, root: b}"])


def test_exponent_floats_without_a_dot() -> None:
    # PyYAML (YAML 1.1) reads 1e-3 as a string and the schema refused it; YAML 1.2 and Python read a float.
    assert parse_override("optimizer.lr=1e-3") == ("optimizer.lr", 0.001)
    assert parse_override("optimizer.weight_decay=5E-4") == ("optimizer.weight_decay", 0.0005)
    assert parse_override("train.device='1e-3'") == ("train.device", "1e-3")  # quoted: still a string
    assert load_config(None, ["optimizer.lr=1e-3"]).optimizer.lr == 0.001
    assert yaml.safe_load("lr: 1e-3") == {"lr": "1e-3"}  # PyYAML's own loader is left as it is


def test_overrides() -> None:
    assert parse_override("optimizer.lr=0.02") == ("optimizer.lr", 0.02)
    assert parse_override("data.patch_size=[96, 96, 64]") == ("data.patch_size", [96, 96, 64])
    assert parse_override("train.amp=bf16") == ("train.amp", "bf16")
    assert parse_override("data.root=") == ("data.root", None)
    with pytest.raises(ConfigError, match="--set expects key=value, got 'optimizer.lr'"):
        parse_override("optimizer.lr")
    cfg = load_config(None, ["optimizer.lr=0.02", "data.patch_size=[96,96,64]", "loss.sdf=false"])
    assert cfg.optimizer.lr == 0.02 and cfg.data.patch_size == (96, 96, 64) and cfg.loss.sdf is False
    with pytest.raises(ConfigError, match="config key 'optimizer' is a section; set one of its keys, e.g. 'optimizer.lr'"):
        apply_overrides({}, {"optimizer": 3})
    with pytest.raises(ConfigError, match="unknown config key 'seed.x'"):
        apply_overrides({}, {"seed.x": 3})
    # Overrides do not touch the mapping they are applied to.
    base = {"optimizer": {"lr": 0.5}}
    out = apply_overrides(base, {"optimizer.momentum": 0.5})
    assert base == {"optimizer": {"lr": 0.5}} and out["optimizer"] == {"lr": 0.5, "momentum": 0.5}


def test_defaults_are_the_papers_recipe_and_method_defaults_resolve() -> None:
    cfg = resolve(Config())
    assert (cfg.method, cfg.seed, cfg.iterations) == ("canet", 1337, 6000)
    assert cfg.data.patch_size == (112, 112, 80) and (cfg.data.batch_size, cfg.data.labeled_bs) == (4, 2)
    o = cfg.optimizer
    assert (o.lr, o.momentum, o.weight_decay, o.milestones, o.gamma) == (0.01, 0.9, 1e-4, (2500, 3800), 0.1)
    assert (cfg.discriminator.lr, cfg.discriminator.betas) == (1e-4, (0.9, 0.99))
    assert cfg.loss.beta == 0.3 and cfg.loss.adv_weight == 0.01
    assert cfg.model.transformer and cfg.discriminator.se and cfg.loss.sdf and cfg.loss.adversarial
    sass = resolve(config_from_dict({"method": "sassnet"}))
    assert not sass.model.transformer and not sass.discriminator.se and sass.loss.sdf
    uamt = resolve(config_from_dict({"method": "uamt"}))
    assert uamt.loss.seg_ce and not uamt.loss.sdf and not uamt.loss.adversarial
    # An explicit value wins over the method's default (the ablations).
    abl = resolve(config_from_dict({"model": {"transformer": False}, "loss": {"sdf": False}}))
    assert abl.model.transformer is False and abl.loss.sdf is False and abl.discriminator.se is True


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = resolve(load_config(None, ["method=uamt", "data.root=/x/y", "teacher.passes=4"]))
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    text = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert text["teacher"]["passes"] == 4 and text["data"]["patch_size"] == [112, 112, 80]
    # a string that looks like an exponent float (a folder called 1e3) is quoted, so it reads back as a string
    cfg = load_config(None, ["data.root='1e3'", "optimizer.lr=1e-5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert "root: '1e3'" in (tmp_path / "config.yaml").read_text()
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and again.data.root == "1e3" and again.optimizer.lr == 1e-5


@pytest.mark.parametrize(
    ("name", "method", "labeled", "labeled_bs"),
    [
        ("la_canet_8", "canet", 8, 2),
        ("la_canet_16", "canet", 16, 2),
        ("la_vnet_8", "vnet", 8, 4),
        ("la_vnet_16", "vnet", 16, 4),
        ("la_vnet_full", "vnet", None, 4),
        ("la_sassnet_16", "sassnet", 16, 2),
        ("la_uamt_16", "uamt", 16, 2),
    ],
)
def test_shipped_configs(name: str, method: str, labeled: int | None, labeled_bs: int) -> None:
    cfg = resolve(load_config(name))
    assert cfg.method == method and cfg.data.labeled == labeled and cfg.data.labeled_bs == labeled_bs
    assert cfg.data.root is None and cfg.iterations == 6000 and cfg.seed == 1337
    assert cfg.data.patch_size == (112, 112, 80) and cfg.data.batch_size == 4
    assert cfg.validation.every == 0  # never the test split by default
    if method == "canet":
        assert cfg == resolve(config_from_dict({"data": {"labeled": labeled, "num_workers": 4}}))


def test_quick_demo_never_trains_longer_than_asked() -> None:
    from canet.training.demo import quick_iterations

    assert [quick_iterations(n) for n in (150, 100, 49, 10, 4, 1)] == [30, 20, 10, 10, 4, 1]


def test_demo_config_is_not_a_file_called_demo_in_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("method: vnet\niterations: 3\n")  # a user's own file that happens to be called so
    cfg = demo_config(tmp_path / "data")
    assert (cfg.method, cfg.iterations) == ("canet", 150)


def test_demo_config_is_the_packaged_demo_yaml() -> None:
    cfg = demo_config("/tmp/somewhere", iterations=7)
    assert cfg.iterations == 7 and cfg.data.root == str(Path("/tmp/somewhere").resolve())
    assert cfg.train.device == "cpu"
    assert cfg == load_config("demo", {"data.root": cfg.data.root, "iterations": 7, "train.device": "cpu"})
    # The demo's settings (before demo.yaml became its only copy they were also a dict in demo.py).
    d = resolve(demo_config("/tmp/somewhere"))
    assert (d.method, d.seed, d.iterations) == ("canet", 1337, 150)
    assert (d.data.labeled, d.data.patch_size, d.data.batch_size, d.data.labeled_bs) == (4, (64, 64, 48), 4, 2)
    assert d.data.num_workers == 1 and d.model.n_filters == 8 and d.model.dropout == 0.5
    assert d.discriminator.ndf == 32 and d.optimizer.lr == 0.01 and d.optimizer.milestones == (120,)
    assert d.loss.rampup_interval == 4 and d.train.device == "cpu"
    assert (d.train.log_every, d.train.checkpoint_every, d.train.keep_every) == (10, 50, 0)


def test_shipped_configs_fit_the_real_la_data(la_root: Path) -> None:
    from canet.data import open_dataset

    for name, labeled in (("la_canet_8", 8), ("la_canet_16", 16), ("la_vnet_full", 80)):
        cfg = load_config(name, {"data.root": str(la_root)})
        spec = open_dataset(cfg.data.root, labeled=cfg.data.labeled)
        assert len(spec.labeled) == labeled and len(spec.labeled) + len(spec.unlabeled) == 80
        assert len(spec.test) == 20 and not spec.validation


def test_keys_the_method_never_reads_are_named_at_the_start() -> None:
    """A uamt config with discriminator.lr set trained without it and without a word; one base config
    may serve several methods, so it is a warning, not a refusal."""
    warning = unused_keys_warning(resolve(load_config(None, [
        "method=uamt", "discriminator.lr=0.1", "loss.adv_weight=1", "teacher.passes=4"])))
    assert warning == ("warning: method 'uamt' does not use discriminator.lr (0.1), loss.adv_weight (1.0): "
                       "they have no effect on this run")
    for sets, named in ((["method=canet", "teacher.passes=4"], "teacher.passes (4)"),
                        (["method=sassnet", "loss.consistency=0.5"], "loss.consistency (0.5)"),
                        (["method=vnet", "data.labeled_bs=4", "loss.rampup_length=10"], "loss.rampup_length (10.0)"),
                        (["method=mt", "discriminator.betas=[0.5, 0.9]"], "discriminator.betas ((0.5, 0.9))")):
        assert unused_keys_warning(resolve(load_config(None, sets))) == (
            f"warning: method {sets[0][7:]!r} does not use {named}: it has no effect on this run")
    # read by the method, an ablation's leftovers, or the defaults written out: nothing to say
    for sets in (["method=uamt", "teacher.passes=4", "loss.rampup_length=10"],
                 ["method=sassnet", "loss.adv_weight=0.1", "discriminator.ndf=8"],
                 ["method=vnet", "data.labeled_bs=4", "discriminator.lr=0.0001", "teacher.passes=8"]):
        assert unused_keys_warning(resolve(load_config(None, sets))) is None, sets
    assert unused_keys_warning(resolve(load_config("la_canet_16", ["loss.adversarial=false"]))) is None
    for name in ("la_canet_16", "la_canet_8", "la_sassnet_16", "la_uamt_16", "la_vnet_16", "la_vnet_8",
                 "la_vnet_full", "demo"):
        assert unused_keys_warning(resolve(load_config(name))) is None, name


def test_numbers_yaml_11_reads_otherwise_than_they_look_are_refused(tmp_path: Path) -> None:
    """YAML 1.1 read seed: 010 as 8 and iterations: 1:00 as 60, where a reader sees 10 and a time."""
    for text, read in (("010", 8), ("1:00", 60), ("-007", -7)):
        with pytest.raises(ConfigError, match=rf"^the value of --set 'seed={text}': '{text}' \(line 1\) is read by "
                                              rf"YAML 1.1 as {read}; write {read} if that is meant, or quote it"):
            load_config(None, [f"seed={text}"])
    with pytest.raises(ConfigError, match=r"^.*\.yaml: '1:30.5' \(line 2\) is read by YAML 1.1 as 90.5 \(base 60\)"):
        load_config(write(tmp_path, "method: canet\nloss: {beta: 1:30.5}\n"))
    # plain, hexadecimal, underscored and quoted numbers read as they look
    assert parse_override("seed=10") == ("seed", 10) and parse_override("seed=0") == ("seed", 0)
    assert parse_override("seed=0x10") == ("seed", 16) and parse_override("iterations=6_000") == ("iterations", 6000)
    assert parse_override("train.device='010'") == ("train.device", "010")
    assert parse_override("loss.beta=0.30") == ("loss.beta", 0.3)
