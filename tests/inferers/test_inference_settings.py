"""InferenceSettings, sums on the predictor's device, bf16 autocast, the one patch-size check."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canet.data.augment import check_patch_size as data_check
from canet.data.loader import build_train_loader
from canet.errors import CanetError, ConfigError, DataError, PatchSizeError
from canet.inferers import InferenceSettings, predict_volume, sliding_window_inference
from canet.inferers.settings import check_amp
from canet.inferers.sliding_window import gaussian_weights, pad_amounts, window_starts
from canet.models import create_model
from canet.patch_size import check_patch_size
from canet.training.config import config_from_dict

CUDA = torch.cuda.is_available()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "slow"}, "mode must be one of reference, fast, got 'slow'"),
        ({"weighting": "tent"}, "weighting must be one of gaussian, constant, got 'tent'"),
        ({"overlap": 1.0}, r"overlap must be in \[0, 1\), got 1.0"),
        ({"overlap": True}, r"overlap must be in \[0, 1\), got True"),
        ({"sw_batch_size": 0}, "sw_batch_size must be a positive integer, got 0"),
        ({"sw_batch_size": 2.0}, "sw_batch_size must be a positive integer, got 2.0"),
        ({"amp": "fp8"}, "amp must be one of none, bf16, got 'fp8'"),
        ({"device": 3}, "device must be auto, cpu, cuda or cuda:N, got 3"),
        ({"windows": 3}, "unknown inference setting 'windows'; known: amp, channels_last, decision, device,"),
    ],
)
def test_bad_settings_end_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(CanetError, match=message) as info:
        InferenceSettings.make(None, **changes)
    assert "\n" not in str(info.value)


def test_defaults_replace_and_record() -> None:
    s = InferenceSettings()
    assert (s.mode, s.overlap, s.weighting, s.sw_batch_size, s.tta, s.lcc) == ("fast", 0.5, "gaussian", 4, False, None)
    assert (s.device, s.amp, s.sums_on_cpu, s.threshold, s.channels_last) == ("auto", "none", False, 0.5, None)
    r = s.replace(mode="reference", lcc=True)
    assert (r.mode, r.lcc, s.mode) == ("reference", True, "fast")  # a copy; the original is unchanged
    assert InferenceSettings.make(s) is s
    assert InferenceSettings(device=torch.device("cpu")).device == "cpu"
    assert s.record(torch.device("cpu")) == {
        "mode": "fast", "decision": "probability", "tta": False, "lcc": None, "overlap": 0.5,
        "weighting": "gaussian", "amp": "none", "sw_batch_size": 4, "device": "cpu",
    }
    assert r.record() == {"mode": "reference", "decision": "probability", "tta": False, "lcc": True, "amp": "none",
                          "sw_batch_size": 4}
    with pytest.raises(CanetError, match="settings must be an InferenceSettings, got 'reference'"):
        InferenceSettings.make("reference")  # type: ignore[arg-type]


def test_device_auto_and_none() -> None:
    expected = torch.device("cuda" if CUDA else "cpu")
    assert InferenceSettings().run_device() == expected
    assert InferenceSettings(device=None).run_device(torch.device("cpu")) == torch.device("cpu")
    if not CUDA:
        with pytest.raises(ConfigError, match="device is 'cuda' but CUDA is not available"):
            InferenceSettings(device="cuda").run_device()
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        InferenceSettings(device="tpu").run_device()


def test_bf16_is_refused_on_the_cpu_in_one_line() -> None:
    with pytest.raises(CanetError, match="amp 'bf16' needs a CUDA device, got cpu") as info:
        check_amp("bf16", torch.device("cpu"))
    assert "\n" not in str(info.value)
    check_amp("none", torch.device("cpu"))
    net = _net()
    with pytest.raises(CanetError, match="amp 'bf16' needs a CUDA device, got cpu"):
        predict_volume(net, np.zeros((20, 20, 12), np.float32), (16, 16, 16), device="cpu", amp="bf16")


# --------------------------------------------------------------------------- sums on the device


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("vnet", n_filters=4, num_classes=2).eval()


def _copy_back_average(image, predictor, patch, mode, overlap, weighting, batch_size, strides=(18, 18, 4)):
    """The sliding-window average as canet computed it before the sums moved to the device.

    Windows are cut from the image where it lives, each batch of outputs is copied back
    there and summed there; written out here so that the library's path can be compared.
    """
    size = image.shape[2:]
    pads = [pad_amounts(s, p) for s, p in zip(size, patch)]
    flat = [v for a, b in reversed(pads) for v in (a, b)]
    padded_image = F.pad(image, flat)
    padded = padded_image.shape[2:]
    if mode == "reference":
        starts = [window_starts(s, p, "reference", stride=st) for s, p, st in zip(padded, patch, strides)]
    else:
        starts = [window_starts(s, p, "fast", overlap=overlap) for s, p in zip(padded, patch)]
    weight = gaussian_weights(patch) if mode == "fast" and weighting == "gaussian" else None
    corners = [(x, y, z) for x in starts[0] for y in starts[1] for z in starts[2]]
    total = None
    norm = torch.zeros((1, 1, *padded))
    for i in range(0, len(corners), batch_size):
        group = corners[i : i + batch_size]
        windows = torch.cat([padded_image[:, :, x : x + patch[0], y : y + patch[1], z : z + patch[2]]
                             for x, y, z in group])
        out = predictor(windows).to("cpu", torch.float32)
        if total is None:
            total = torch.zeros((image.shape[0], out.shape[1], *padded))
        for j, (x, y, z) in enumerate(group):
            piece = out[j * image.shape[0] : (j + 1) * image.shape[0]]
            where = (slice(None), slice(None), slice(x, x + patch[0]), slice(y, y + patch[1]), slice(z, z + patch[2]))
            total[where] += piece if weight is None else piece * weight
            norm[where] += 1.0 if weight is None else weight
    result = total / norm
    return result[:, :, pads[0][0] : pads[0][0] + size[0], pads[1][0] : pads[1][0] + size[1],
                  pads[2][0] : pads[2][0] + size[2]]


@pytest.mark.parametrize(
    ("mode", "weighting", "batch", "shape"),
    [
        ("fast", "gaussian", 4, (24, 21, 19)),
        ("fast", "constant", 3, (20, 14, 9)),  # padded on two axes
        ("reference", "gaussian", 2, (24, 20, 18)),
    ],
)
def test_sums_on_the_device_equal_the_copy_back_path_bit_for_bit(mode, weighting, batch, shape) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv3d(3, 2, 3, padding=1)).eval()
    g = torch.Generator().manual_seed(1)
    image = torch.randn(1, 1, *shape, generator=g)

    def predictor(w):
        return torch.softmax(net(w), dim=1)

    with torch.no_grad():
        old = _copy_back_average(image, predictor, (16, 16, 16), mode, 0.5, weighting, batch)
        new = sliding_window_inference(image, predictor, (16, 16, 16), mode=mode, weighting=weighting,
                                       sw_batch_size=batch)
        on_cpu = sliding_window_inference(image, predictor, (16, 16, 16), mode=mode, weighting=weighting,
                                          sw_batch_size=batch, sum_device="cpu")
    assert new.shape == old.shape == (1, 2, *shape)
    assert torch.equal(new, old) and torch.equal(on_cpu, old)
    assert float(old.std()) > 1e-3  # a real, varying map


def test_predict_volume_sums_on_cpu_option_gives_the_same_volume() -> None:
    net = _net()
    image = np.random.default_rng(2).standard_normal((20, 18, 11)).astype(np.float32)
    a_mask, a_prob = predict_volume(net, image, (16, 16, 16), lcc=False)
    b_mask, b_prob = predict_volume(net, image, (16, 16, 16), lcc=False, sums_on_cpu=True)
    assert np.array_equal(a_prob, b_prob) and np.array_equal(a_mask, b_mask)
    settings = InferenceSettings(mode="reference", lcc=False, device="cpu")
    c_mask, c_prob = predict_volume(net, image, (16, 16, 16), settings)
    d_mask, d_prob = predict_volume(net, image, (16, 16, 16), mode="reference", lcc=False, device="cpu")
    assert np.array_equal(c_prob, d_prob) and not np.array_equal(a_prob, c_prob)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_sums_stay_on_the_device_without_a_sync_per_batch() -> None:
    """On the GPU the result equals the CPU-sums path, and the number of host syncs does not
    grow with the number of windows (sums stay on the device; one copy back per volume)."""
    net = _net().cuda()

    def predictor(w):
        return torch.sigmoid(net(w).seg)

    syncs = []
    for shape in ((40, 40, 16), (80, 80, 32)):
        image = torch.randn(1, 1, *shape)
        with torch.no_grad():
            on_cpu = sliding_window_inference(image, predictor, (16, 16, 16), device="cuda", sum_device="cpu")
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    on_gpu = sliding_window_inference(image, predictor, (16, 16, 16), device="cuda")
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        assert on_gpu.device.type == "cpu" and torch.equal(on_gpu, on_cpu)
        syncs.append(sum("synchroniz" in str(w.message) for w in seen))
    assert syncs[0] == syncs[1], syncs


@pytest.mark.skipif(not CUDA or not torch.cuda.is_bf16_supported(), reason="needs a GPU with bf16")
def test_cuda_bf16_autocast_is_close_to_fp32() -> None:
    net = _net()
    image = np.random.default_rng(3).standard_normal((48, 40, 20)).astype(np.float32)
    _, fp32 = predict_volume(net, image, (16, 16, 16), device="cuda", lcc=False)
    _, bf16 = predict_volume(net, image, (16, 16, 16), device="cuda", lcc=False, amp="bf16")
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - fp32).max() < 0.05


# --------------------------------------------------------------------------- one patch-size check


@pytest.mark.parametrize("bad", [(0, 16, 16), (16, 16), (16.0, 16, 16), (True, 16, 16), "abc", 16, None])
def test_one_patch_size_check_everywhere(bad) -> None:
    with pytest.raises(PatchSizeError, match="patch_size must be three positive integers") as info:
        check_patch_size(bad)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, DataError)
    for caller in (
        lambda: data_check(bad),
        lambda: create_model("canet", n_filters=4, patch_size=bad),
        lambda: sliding_window_inference(torch.zeros(1, 1, 16, 16, 16), lambda w: w, bad),
        lambda: build_train_loader(None, bad, batch_size=2, labeled_bs=1, seed=0),  # type: ignore[arg-type]
    ):
        with pytest.raises(PatchSizeError, match="patch_size must be three positive integers"):
            caller()


def test_patch_size_multiples() -> None:
    assert check_patch_size((np.int64(32), 16, 48), multiple=16) == (32, 16, 48)
    assert check_patch_size([7, 5, 3]) == (7, 5, 3)
    with pytest.raises(PatchSizeError, match=r"patch_size must be 3 positive multiples of 16, got \(112, 100, 80\)"):
        create_model("canet", n_filters=4, patch_size=(112, 100, 80))
    with pytest.raises(PatchSizeError, match=r"data.patch_size must be 3 positive multiples of 16, got \[100, 112, 80\]"):
        config_from_dict({"data": {"patch_size": [100, 112, 80]}})
