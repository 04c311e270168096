"""Import of original CA-Net checkpoints: key mapping, equivalence, the CLI command, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import canet
from canet.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from canet.cli.main import main
from canet.errors import CanetError, CheckpointError, ConfigError
from canet.models import create_model
from canet.models.original import (
    convert_discriminator_state_dict,
    convert_generator_state_dict,
    discriminator_from_original,
    extract_state_dict,
    generator_from_original,
    import_checkpoint,
    infer_generator_kwargs,
)

TOL = 1e-4


def _read_tsv(path: Path) -> dict[str, tuple[int, ...]]:
    rows = path.read_text().strip().splitlines()
    assert rows[0] == "key\tshape"
    out = {}
    for row in rows[1:]:
        key, shape = row.split("\t")
        out[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return out


def _random_state_dict(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(123)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --- the reference re-statement itself fits the published layouts -------------------------


def test_reference_generator_has_exactly_the_tsv_layout(original_ref, reference_dir):
    layout = _read_tsv(reference_dir / "canet_generator_state_dict.tsv")
    ref = original_ref.OriginalGenerator()
    assert _shapes(ref) == layout
    assert sum(p.numel() for p in ref.parameters()) == 24_491_330


def test_reference_discriminator_has_exactly_the_tsv_layout(original_ref, reference_dir):
    layout = _read_tsv(reference_dir / "canet_discriminator_state_dict.tsv")
    assert _shapes(original_ref.OriginalDiscriminator()) == layout


# --- key mapping against the tsv -----------------------------------------------------------


def test_every_tsv_key_maps_with_strict_loading(reference_dir):
    layout = _read_tsv(reference_dir / "canet_generator_state_dict.tsv")
    sd = _random_state_dict(layout, seed=0)
    assert infer_generator_kwargs(sd) == {
        "in_channels": 1,
        "num_classes": 2,
        "n_filters": 16,
        "patch_size": (112, 112, 80),
    }
    converted = convert_generator_state_dict(sd)
    # 12 layers x (query, key, value) x (weight, bias) become 12 x qkv x (weight, bias).
    assert len(converted) == len(layout) - 12 * 4
    model = generator_from_original(sd)
    assert not model.training
    model_sd = model.state_dict()
    assert set(converted) == set(model_sd)
    for key, value in converted.items():
        assert torch.equal(model_sd[key], value), key
    # Spot checks of the renaming, by value.
    assert torch.equal(model_sd["enc3.2.conv.weight"], sd["block_three.conv.6.weight"])
    assert torch.equal(model_sd["enc3.2.bn.running_var"], sd["block_three.conv.7.running_var"])
    assert torch.equal(model_sd["up4.conv.weight"], sd["block_five_up.conv.0.weight"])
    assert torch.equal(model_sd["dec1.0.bn.bias"], sd["block_nine.conv.1.bias"])
    assert torch.equal(model_sd["head_sdf.weight"], sd["out_conv.weight"])
    assert torch.equal(model_sd["head_seg.weight"], sd["out_conv2.weight"])
    assert torch.equal(model_sd["transformer.fold.conv.weight"], sd["detransformer.conv_more.0.weight"])
    qkv_w = model_sd["transformer.blocks.5.attn.qkv.weight"]
    qkv_b = model_sd["transformer.blocks.5.attn.qkv.bias"]
    for i, part in enumerate(("query", "key", "value")):
        assert torch.equal(qkv_w[168 * i : 168 * (i + 1)], sd[f"transformer.layer.5.attn.{part}.weight"])
        assert torch.equal(qkv_b[168 * i : 168 * (i + 1)], sd[f"transformer.layer.5.attn.{part}.bias"])
    assert model_sd["enc1.0.bn.num_batches_tracked"].item() == 123


def test_discriminator_tsv_maps(reference_dir):
    layout = _read_tsv(reference_dir / "canet_discriminator_state_dict.tsv")
    sd = _random_state_dict(layout, seed=1)
    converted = convert_discriminator_state_dict(sd)
    assert set(converted) == set(create_model("dam", se=False).state_dict())
    plain = discriminator_from_original(sd)
    assert plain.se is None and torch.equal(plain.state_dict()["down3.weight"], sd["conv4.weight"])
    with_se = discriminator_from_original(sd, se=True)
    assert with_se.se is not None and torch.equal(with_se.classifier.weight, sd["classifier.weight"])


@pytest.mark.parametrize("drop", ["transformer.layer.3.attn.key.bias", "block_six.conv.4.weight", "out_conv.bias"])
def test_a_missing_key_is_reported(reference_dir, drop):
    sd = _random_state_dict(_read_tsv(reference_dir / "canet_generator_state_dict.tsv"), seed=2)
    del sd[drop]
    with pytest.raises(CheckpointError, match="missing|has no attn.key.bias"):
        generator_from_original(sd)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("block_two.conv.6.weight", "1 unexpected"),  # a third layer in a two-layer stage
        ("transformer.layer.12.ffn_norm.weight", "1 unexpected"),
        ("decoder.weight", "'decoder.weight' is not part of the original CA-Net generator"),
    ],
)
def test_a_leftover_key_is_reported(reference_dir, extra, match):
    sd = _random_state_dict(_read_tsv(reference_dir / "canet_generator_state_dict.tsv"), seed=3)
    sd[extra] = torch.zeros(32, 32, 3, 3, 3)
    with pytest.raises(CheckpointError, match=match):
        generator_from_original(sd)


def test_a_wrong_shape_is_reported(reference_dir):
    sd = _random_state_dict(_read_tsv(reference_dir / "canet_generator_state_dict.tsv"), seed=4)
    sd["block_seven.conv.3.weight"] = torch.zeros(64, 64, 1, 1, 1)
    with pytest.raises(CheckpointError, match=r"dec3.1.conv.weight has shape \(64, 64, 1, 1, 1\)"):
        generator_from_original(sd)


# --- equivalence with the independent re-statement, through the CLI ------------------------


def _reference_outputs(ref: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return ref.eval()(x)


@pytest.mark.parametrize(
    ("grid", "patch", "cli_patch"),
    [((7, 7, 5), (112, 112, 80), []), ((4, 4, 3), (64, 64, 48), ["--patch-size", "64", "64", "48"])],
)
def test_imported_model_equals_original_network(
    original_ref, tmp_path, capsys, grid, patch, cli_patch
):
    ref = original_ref.randomize_(original_ref.OriginalGenerator(grid=grid), seed=11)
    src, dst = tmp_path / "original.pth", tmp_path / "canet.pt"
    torch.save(ref.state_dict(), src)
    assert main(["import-checkpoint", str(src), str(dst), *cli_patch]) == 0
    assert f"wrote {dst}: model canet(" in capsys.readouterr().out

    payload = load_checkpoint(dst)
    assert payload["created_by"] == "canet import-checkpoint"
    assert payload["source"] == str(src) and payload["config"] is None
    assert payload["model"] == {
        "name": "canet",
        "kwargs": {"in_channels": 1, "num_classes": 2, "n_filters": 16, "patch_size": patch},
    }
    model = canet.load_model(dst)
    assert not model.training

    x = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(5))
    tanh_ref, seg_ref = _reference_outputs(ref, x)
    with torch.no_grad():
        out = model(x)
    assert seg_ref.std() > 0.1 and 0.05 < tanh_ref.abs().mean() < 0.95  # a non-trivial check
    torch.testing.assert_close(out.seg, seg_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(out.sdf, tanh_ref, rtol=0, atol=TOL)

    # The transformer path matters: a wrong token order would not pass. Reversing the
    # position embedding (as a flipped order would) moves the outputs well beyond TOL.
    with torch.no_grad():
        model.transformer.pos_embed.copy_(model.transformer.pos_embed.flip(1))
        flipped = model(x)
    assert (flipped.seg - seg_ref).abs().max() > 100 * TOL


def test_discriminator_equals_original(original_ref):
    ref = original_ref.randomize_(original_ref.OriginalDiscriminator(ndf=16), seed=12).eval()
    ours = discriminator_from_original(ref.state_dict())
    g = torch.Generator().manual_seed(6)
    sdm, img = torch.tanh(torch.randn(2, 1, 112, 112, 80, generator=g)), torch.randn(2, 1, 112, 112, 80, generator=g)
    with torch.no_grad():
        expected, got = ref(sdm, img), ours(sdm, img)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL)


# --- what the importer accepts and refuses ---------------------------------------------------


@pytest.fixture(scope="module")
def small_original(original_ref) -> dict[str, torch.Tensor]:
    """A random original state dict at a 32x32x32 patch (8 tokens)."""
    return original_ref.randomize_(original_ref.OriginalGenerator(grid=(2, 2, 2)), seed=13).state_dict()


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module", "plain"])
def test_wrapped_state_dicts_are_accepted(tmp_path, small_original, wrap):
    if wrap == "module":
        obj = {f"module.{k}": v for k, v in small_original.items()}
    elif wrap == "plain":
        obj = small_original
    else:
        obj = {wrap: small_original, "epoch": 10, "note": "saved by train.py"}
    src = tmp_path / "w.pth"
    torch.save(obj, src)
    spec = import_checkpoint(src, tmp_path / "w.pt", patch_size=(32, 32, 32))
    assert spec["name"] == "canet" and spec["parameters"] == 24_491_330 - 237 * 168
    loaded = canet.load_model(tmp_path / "w.pt")
    assert torch.equal(loaded.transformer.pos_embed, small_original["embeddings.position_embeddings"])


def test_loaded_import_runs_at_other_sizes(tmp_path, small_original, original_ref):
    src = tmp_path / "s.pth"
    torch.save(small_original, src)
    import_checkpoint(src, tmp_path / "s.pt", patch_size=(32, 32, 32))
    model = canet.load_model(tmp_path / "s.pt")
    x = torch.randn(1, 1, 48, 32, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = model(x)
    assert out.seg.shape == (1, 1, 48, 32, 64) and torch.isfinite(out.seg).all()


def _cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_refuses_files_that_are_not_original_checkpoints(tmp_path, capsys, small_original):
    dst = str(tmp_path / "out.pt")

    err = _cli_error(["import-checkpoint", str(tmp_path / "nope.pth"), dst], capsys)
    assert "checkpoint not found" in err and "nope.pth" in err

    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    err = _cli_error(["import-checkpoint", str(text), dst], capsys)
    assert err == f"error: {text} is not a PyTorch checkpoint\n"

    rand = tmp_path / "random.pth"
    torch.save({"w": torch.randn(3, 3), "b": torch.randn(3)}, rand)
    err = _cli_error(["import-checkpoint", str(rand), dst], capsys)
    assert "not an original CA-Net generator state dict: no 'block_one.conv.0.weight'" in err

    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in small_original.items() if not k.startswith("block_nine")}, partial)
    err = _cli_error(["import-checkpoint", str(partial), dst, "--patch-size", "32", "32", "32"], capsys)
    assert "missing (first 'dec1.0.conv.weight')" in err

    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    assert "holds a Tensor, not a state dict" in _cli_error(["import-checkpoint", str(tensor_file), dst], capsys)

    mixed = tmp_path / "mixed.pth"
    torch.save({"block_one.conv.0.weight": torch.zeros(16, 1, 3, 3, 3), "lr": 0.01}, mixed)
    assert "entry 'lr' is a float, not a tensor" in _cli_error(["import-checkpoint", str(mixed), dst], capsys)

    diverged = tmp_path / "diverged.pth"
    torch.save({**small_original, "block_one.conv.0.weight": torch.full_like(small_original["block_one.conv.0.weight"],
                                                                             float("nan"))}, diverged)
    err = _cli_error(["import-checkpoint", str(diverged), dst, "--patch-size", "32", "32", "32"], capsys)
    assert "1 weight tensor(s) hold NaN or infinite values (first 'block_one.conv.0.weight')" in err

    ours = tmp_path / "ours.pt"
    save_checkpoint(make_checkpoint(create_model("vnet", n_filters=4), created_by="test"), ours)
    err = _cli_error(["import-checkpoint", str(ours), dst], capsys)
    assert "already a canet checkpoint" in err

    assert not Path(dst).exists()


def test_token_count_needs_a_fitting_patch_size(tmp_path, capsys, small_original):
    src = tmp_path / "small.pth"
    torch.save(small_original, src)
    dst = str(tmp_path / "o.pt")
    err = _cli_error(["import-checkpoint", str(src), dst], capsys)
    assert "8 tokens" in err and "--patch-size" in err
    err = _cli_error(["import-checkpoint", str(src), dst, "--patch-size", "64", "32", "32"], capsys)
    assert "gives 16 tokens" in err and "has 8" in err
    err = _cli_error(["import-checkpoint", str(src), dst, "--patch-size", "32", "32", "30"], capsys)
    assert "multiples of 16" in err
    assert main(["import-checkpoint", str(src), dst, "--patch-size", "32", "32", "32"]) == 0
    assert canet.load_model(dst).transformer.grid == (2, 2, 2)


def test_api_errors_are_canet_errors(small_original):
    with pytest.raises(ConfigError):
        infer_generator_kwargs(small_original)
    two = dict(small_original)
    two["out_conv2.weight"] = torch.zeros(2, 16, 1, 1, 1)
    with pytest.raises(CheckpointError, match="2 channels"):
        infer_generator_kwargs(two, patch_size=(32, 32, 32))
    with pytest.raises(CheckpointError, match="empty dict"):
        extract_state_dict({})
    with pytest.raises(CanetError, match="not part of the original CA-Net discriminator"):
        convert_discriminator_state_dict({"conv9.weight": torch.zeros(1)})


def test_refuses_to_overwrite_the_source(tmp_path, small_original):
    src = tmp_path / "same.pth"
    torch.save(small_original, src)
    with pytest.raises(CheckpointError, match="is the source file"):
        import_checkpoint(src, src, patch_size=(32, 32, 32))
    assert torch.load(src, weights_only=True).keys() == small_original.keys()


def test_list_models_command(capsys):
    assert main(["list-models"]) == 0
    assert capsys.readouterr().out.split() == ["canet", "dam", "vnet"]


def test_multiclass_original_head(original_ref):
    ref = original_ref.randomize_(original_ref.OriginalGenerator(grid=(2, 2, 2), n_classes=3), seed=14)
    model = generator_from_original(ref.state_dict(), patch_size=(32, 32, 32))
    assert model.canet_spec["kwargs"]["num_classes"] == 3
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(8))
    tanh_ref, seg_ref = _reference_outputs(ref, x)
    with torch.no_grad():
        out = model(x)
    assert out.seg.shape == (1, 3, 32, 32, 32)
    torch.testing.assert_close(out.seg, seg_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(out.sdf, tanh_ref, rtol=0, atol=TOL)
    assert math.isfinite(float(out.seg.sum()))


def test_a_patch_size_that_permutes_the_original_is_warned_about(tmp_path, capsys, original_ref):
    """80x112x112 has the original's 245 tokens, laid out 5x7x7 instead of 7x7x5: imported, with a warning."""
    src = tmp_path / "orig.pth"
    torch.save(original_ref.OriginalGenerator(grid=(7, 7, 5)).state_dict(), src)
    assert main(["import-checkpoint", str(src), str(tmp_path / "a.pt"), "--patch-size", "80", "112", "112"]) == 0
    err = capsys.readouterr().err
    assert err == (
        "warning: --patch-size 80 112 112 lays the 245 position-embedding tokens out as a 5x7x7 grid, the "
        "original 112x112x80 patch as 7x7x5; if the model was trained at 112x112x80, import it again without "
        "--patch-size\n"
    )
    for extra in ([], ["--patch-size", "112", "112", "80"]):
        assert main(["import-checkpoint", str(src), str(tmp_path / "b.pt"), *extra]) == 0
        assert capsys.readouterr().err == ""
