"""The registered networks: sizes, shapes, gradients, modes, memory formats, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import canet
from canet.checkpoint import make_checkpoint, save_checkpoint
from canet.errors import CanetError, ConfigError
from canet.models import DAM, SegOutput, TransVNet, VNet, create_model, list_models, out_channels
from canet.models.transformer import TransformerBottleneck


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_registry_names_and_unknown_name():
    assert list_models() == ["canet", "dam", "vnet"]
    assert canet.list_models() == list_models()
    with pytest.raises(CanetError, match="unknown model 'unet'; valid names: canet, dam, vnet"):
        create_model("unet")
    with pytest.raises(CanetError, match="bad arguments for model 'vnet'"):
        create_model("vnet", patch_size=(32, 32, 32))


def test_model_classes():
    assert type(create_model("vnet")) is VNet
    assert type(create_model("canet", patch_size=(32, 32, 32))) is TransVNet
    assert type(create_model("dam")) is DAM


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("canet", {}, 24_491_330),
        ("vnet", {}, 9_448_866),
        ("dam", {}, 11_085_826),
        ("dam", {"se": False}, 11_020_290),
    ],
)
def test_parameter_counts_at_paper_settings(name, kwargs, expected):
    assert _n_params(create_model(name, **kwargs)) == expected


def test_canet_is_vnet_plus_transformer():
    full = create_model("canet")
    plain = create_model("canet", transformer=False)
    assert plain.transformer is None
    assert _n_params(plain) == _n_params(create_model("vnet"))
    # Trans-V adds: 1x1x1 embed, 245 x 168 position embedding, 12 blocks, final norm, fold conv + BN.
    block = 4 * 168 + 3 * 168 * 168 + 3 * 168 + 168 * 168 + 168 + 168 * 3072 + 3072 + 3072 * 168 + 168
    extra = (256 * 168 + 168) + 245 * 168 + 12 * block + 2 * 168 + (168 * 256 * 27 + 2 * 256)
    assert _n_params(full) - _n_params(plain) == extra
    assert full.transformer.pos_embed.shape == (1, 245, 168)
    assert torch.count_nonzero(full.transformer.pos_embed) == 0  # zeros at init
    assert create_model("canet", patch_size=(64, 64, 48)).transformer.pos_embed.shape == (1, 48, 168)


@pytest.mark.parametrize("patch", [(64, 64, 48), (96, 96, 64), (112, 112, 80)])
def test_generators_at_three_patch_sizes(patch):
    x = _randn(1, 1, *patch)
    for name in ("vnet", "canet"):
        model = create_model(name).eval()
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, SegOutput)
        assert out.seg.shape == out.sdf.shape == (1, 1, *patch)
        assert torch.isfinite(out.seg).all() and torch.isfinite(out.sdf).all()
        assert out.sdf.abs().max() <= 1  # tanh
        assert out.seg.std() > 0


@pytest.mark.parametrize("patch", [(64, 64, 48), (96, 96, 64), (112, 112, 80)])
def test_dam_at_three_patch_sizes(patch):
    model = create_model("dam").eval()
    with torch.no_grad():
        logits = model(torch.tanh(_randn(2, 1, *patch, seed=1)), _randn(2, 1, *patch, seed=2))
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()
    assert not torch.equal(logits[0], logits[1])


def test_multiclass_and_channel_rule():
    assert out_channels(2) == 1
    assert out_channels(3) == 3
    assert out_channels(5) == 5
    for bad in (1, 0, -2, 2.0, True, "3"):
        with pytest.raises(ConfigError, match="num_classes"):
            out_channels(bad)
    model = create_model("canet", num_classes=4, in_channels=2, patch_size=(32, 32, 32)).eval()
    with torch.no_grad():
        out = model(_randn(1, 2, 32, 32, 32))
    assert out.seg.shape == out.sdf.shape == (1, 4, 32, 32, 32)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("vnet", {}),
        ("canet", {"patch_size": (32, 32, 32)}),
    ],
)
def test_gradients_reach_every_generator_parameter(name, kwargs):
    torch.manual_seed(0)  # dropout masks
    model = create_model(name, **kwargs).train()
    out = model(_randn(2, 1, 32, 32, 32))
    loss = out.seg.square().mean() + (out.sdf - 0.3).square().mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("se", [True, False])
def test_gradients_reach_every_dam_parameter(se):
    torch.manual_seed(0)
    model = create_model("dam", se=se).train()
    logits = model(torch.tanh(_randn(2, 1, 32, 32, 16, seed=1)), _randn(2, 1, 32, 32, 16, seed=2))
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    names = [n for n, _ in model.named_parameters()]
    assert ("se.fc1.weight" in names) == se and ("se.fc2.weight" in names) == se
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_se_block_is_registered_and_matters():
    model = create_model("dam").eval()
    sd = model.state_dict()
    assert sd["se.fc1.weight"].shape == (64, 512) and sd["se.fc2.weight"].shape == (512, 64)
    sdf, img = torch.tanh(_randn(1, 1, 32, 32, 32, seed=3)), _randn(1, 1, 32, 32, 32, seed=4)
    with torch.no_grad():
        before = model(sdf, img)
        model.se.fc2.weight.zero_()  # gate becomes sigmoid(0) = 0.5 on every channel
        halved = model(sdf, img)
        # Reference: without SE, the pooled features are not scaled by 0.5.
        plain = create_model("dam", se=False).eval()
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("se.")})
        feats = plain(sdf, img) - plain.classifier.bias
    assert not torch.allclose(before, halved)
    torch.testing.assert_close(halved - model.classifier.bias, 0.5 * feats, rtol=1e-5, atol=1e-6)


def test_se_forward_equals_pooled_gating():
    se = create_model("dam").se
    x = _randn(2, 512, 3, 4, 2)
    gated = se(x)
    assert gated.shape == x.shape
    pooled = x.mean(dim=(2, 3, 4))
    torch.testing.assert_close(gated.mean(dim=(2, 3, 4)), pooled * se.gate(pooled))


@pytest.mark.parametrize(
    ("name", "kwargs", "args"),
    [
        ("vnet", {}, lambda: (_randn(1, 1, 32, 32, 32),)),
        ("canet", {"patch_size": (32, 32, 32)}, lambda: (_randn(1, 1, 32, 32, 32),)),
        ("dam", {}, lambda: (_randn(1, 1, 32, 32, 32), _randn(1, 1, 32, 32, 32, seed=1))),
    ],
)
def test_eval_is_deterministic_and_dropout_only_in_training(name, kwargs, args):
    model = create_model(name, **kwargs)
    inputs = args()
    model.eval()
    with torch.no_grad():
        a, b = model(*inputs), model(*inputs)
    for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(ta, tb)
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        c = model(*inputs)
        d = model(*inputs)
    first = (lambda t: t[0]) if isinstance(c, tuple) else (lambda t: t)
    assert not torch.equal(first(c), first(d))  # dropout draws differ


def test_no_dropout_means_deterministic_training_forward():
    model = create_model("vnet", dropout=0.0).train()
    x = _randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x).seg, model(x).seg)


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [("vnet", {}, (1, 1, 48, 32, 32)), ("canet", {"patch_size": (48, 32, 32)}, (1, 1, 48, 32, 32))],
)
def test_channels_last_3d_matches_contiguous(name, kwargs, shape):
    model = create_model(name, **kwargs).eval()
    x = _randn(*shape)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last_3d)
        out = model(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out.seg, ref.seg, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.sdf, ref.sdf, rtol=1e-4, atol=1e-5)
    assert out.seg.is_contiguous(memory_format=torch.channels_last_3d)


def test_channels_last_3d_dam_and_training_step():
    model = create_model("dam").to(memory_format=torch.channels_last_3d).eval()
    sdf, img = _randn(1, 1, 32, 32, 32), _randn(1, 1, 32, 32, 32, seed=1)
    with torch.no_grad():
        ref = model(sdf, img)
        out = model(*(t.contiguous(memory_format=torch.channels_last_3d) for t in (sdf, img)))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    gen = create_model("canet", patch_size=(32, 32, 32)).to(memory_format=torch.channels_last_3d)
    out = gen(_randn(2, 1, 32, 32, 32).contiguous(memory_format=torch.channels_last_3d))
    out.seg.mean().backward()
    assert gen.enc1[0].conv.weight.grad is not None


def test_position_embedding_interpolation():
    bottleneck = TransformerBottleneck(32, grid=(4, 4, 3), dim=12, depth=1, num_heads=2, mlp_dim=8)
    assert bottleneck.position_embedding((4, 4, 3)) is bottleneck.pos_embed
    with torch.no_grad():
        # A value that depends on z only: tokens are in (x, y, z) order, z fastest.
        z = torch.arange(3, dtype=torch.float32)
        bottleneck.pos_embed.copy_(z.repeat(16)[None, :, None].expand(1, 48, 12))
    pe = bottleneck.position_embedding((2, 6, 5))
    assert pe.shape == (1, 60, 12)
    grid = pe.reshape(2, 6, 5, 12)
    assert torch.allclose(grid, grid[:1, :1].expand_as(grid))  # constant over x and y
    ramp = grid[0, 0, :, 0]
    # Trilinear, align_corners=False, 3 -> 5 samples: source z = (i + 0.5) * 3/5 - 0.5, clamped.
    expected = ((torch.arange(5) + 0.5) * 0.6 - 0.5).clamp(0, 2)
    torch.testing.assert_close(ramp, expected)
    with torch.no_grad():
        bottleneck.pos_embed.fill_(0.25)
    assert torch.allclose(bottleneck.position_embedding((8, 1, 2)), torch.tensor(0.25))


def _train_without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Training mode (BatchNorm on batch statistics) with every dropout layer off."""
    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout3d)):
            m.eval()
    return model


def test_other_input_size_equals_model_built_with_interpolated_embedding():
    # BatchNorm on batch statistics keeps an O(1) signal on the deep (transformer)
    # path even with freshly initialized weights; in eval mode it would vanish.
    torch.manual_seed(0)
    big = _train_without_dropout(create_model("canet", patch_size=(64, 64, 48)))
    with torch.no_grad():
        big.transformer.pos_embed.normal_()
        pe = big.transformer.position_embedding((2, 2, 3))
    state = big.state_dict()
    small = _train_without_dropout(create_model("canet", patch_size=(32, 32, 48)))
    small.load_state_dict(state | {"transformer.pos_embed": pe})
    zero = _train_without_dropout(create_model("canet", patch_size=(64, 64, 48)))
    zero.load_state_dict(state | {"transformer.pos_embed": torch.zeros(1, 48, 168)})
    x = _randn(2, 1, 32, 32, 48)
    with torch.no_grad():
        a, b, c = big(x), small(x), zero(x)
    torch.testing.assert_close(a.seg, b.seg, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.sdf, b.sdf, rtol=1e-5, atol=1e-5)
    assert (a.seg - c.seg).abs().max() > 1e-2  # the embedding does reach the output


@pytest.mark.parametrize("name", ["vnet", "canet"])
def test_generator_input_errors_name_the_shape(name):
    model = create_model(name).eval()
    with pytest.raises(CanetError, match=r"multiples of 16, got shape \(1, 1, 40, 32, 32\)"):
        model(torch.zeros(1, 1, 40, 32, 32))
    with pytest.raises(CanetError, match=r"1 channel\(s\), got shape \(1, 2, 32, 32, 32\)"):
        model(torch.zeros(1, 2, 32, 32, 32))
    with pytest.raises(CanetError, match=r"5-D"):
        model(torch.zeros(1, 32, 32, 32))


def test_dam_input_errors():
    model = create_model("dam").eval()
    with pytest.raises(CanetError, match="share batch and spatial size"):
        model(torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 1, 32, 32, 16))
    with pytest.raises(CanetError, match=r"every side >= 16, got shape \(1, 1, 32, 8, 32\)"):
        model(torch.zeros(1, 1, 32, 8, 32), torch.zeros(1, 1, 32, 8, 32))
    with pytest.raises(CanetError, match="1 map and 1 image"):
        model(torch.zeros(1, 2, 32, 32, 32), torch.zeros(1, 1, 32, 32, 32))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("canet", {"patch_size": (112, 100, 80)}, r"multiples of 16, got \(112, 100, 80\)"),
        ("canet", {"patch_size": (112, 112)}, "three positive integers"),
        ("canet", {"patch_size": 112}, "three positive integers"),
        ("vnet", {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ("vnet", {"n_filters": 0}, "n_filters must be a positive integer, got 0"),
        ("vnet", {"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ("dam", {"ndf": -1}, "ndf must be a positive integer, got -1"),
    ],
)
def test_bad_kwargs_raise_config_errors(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model(name, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("vnet", {"n_filters": 8}), ("canet", {"patch_size": (32, 32, 32), "num_classes": 3})],
)
def test_load_model_round_trip(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.train()(_randn(2, 1, 32, 32, 32))  # moves the BatchNorm running statistics
    path = tmp_path / "m.pt"
    save_checkpoint(make_checkpoint(model, created_by="test"), path)
    loaded = canet.load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.canet_spec == {"name": name, "kwargs": kwargs}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = _randn(1, 1, 32, 32, 32, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).seg, model.eval()(x).seg, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vnet", "canet"])
def test_sdf_head_is_float32_under_cpu_bf16_autocast(name):
    torch.manual_seed(0)
    kwargs = {"patch_size": [32, 32, 32]} if name == "canet" else {}
    model = create_model(name, n_filters=4, **kwargs).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.seg.dtype == torch.bfloat16  # the rest of the network stays in bf16
    assert out.sdf.dtype == torch.float32
    # tanh ran in float32: its values are not all bf16 numbers (a bf16 tanh cast up would be).
    assert not torch.equal(out.sdf, out.sdf.bfloat16().float())
    assert out.sdf.abs().max() <= 1
    out.sdf.sum().backward()  # the backward goes through the float32 tanh into the bf16 conv
    assert model.head_sdf.weight.grad is not None and model.head_sdf.weight.grad.dtype == torch.float32
