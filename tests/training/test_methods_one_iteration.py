"""One real training iteration of every method and ablation, on CPU at a 32^3 patch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import canet
from canet.checkpoint import load_checkpoint
from canet.training.trainer import Trainer

CASES = {
    "canet": ("canet", {}),
    "canet-no-transformer": ("canet", {"model__transformer": False}),
    "canet-no-se": ("canet", {"discriminator__se": False}),
    "canet-no-sdf": ("canet", {"loss__sdf": False}),
    "canet-no-adversarial": ("canet", {"loss__adversarial": False}),
    "canet-channels-last-reuse": ("canet", {"train__channels_last": True, "train__d_step_reuse_outputs": True}),
    "sassnet": ("sassnet", {}),
    "vnet": ("vnet", {}),
    "vnet-ce": ("vnet", {"loss__seg_ce": True}),
    "mt": ("mt", {}),
    "uamt": ("uamt", {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_iteration(name: str, make_config, tmp_path: Path) -> None:
    method, overrides = CASES[name]
    cfg = make_config(method, **overrides)
    lines: list[str] = []
    trainer = Trainer(cfg, tmp_path / "run", quiet=True, log=lines.append)
    trainer.setup()
    g0 = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    d0 = None if trainer.discriminator is None else {
        k: v.clone() for k, v in trainer.discriminator.state_dict().items()
    }
    t0 = None if trainer.teacher is None else {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    result = trainer.run()
    assert result.iteration == 1
    # the tiny config sets discriminator.ndf 4 and teacher.passes 2 for every method: named where unread
    unused = [k for k, reads in (("discriminator.ndf (4)", method in ("canet", "sassnet")),
                                 ("teacher.passes (2)", method in ("mt", "uamt"))) if not reads]
    said = [line for line in lines if "does not use" in line]
    assert said == [f"warning: method {method!r} does not use {', '.join(unused)}: "
                    f"{'it has' if len(unused) == 1 else 'they have'} no effect on this run"], lines

    # The networks each method should have, and with which options.
    gen = trainer.generator
    has_transformer = getattr(gen, "transformer", None) is not None
    assert has_transformer == (method == "canet" and overrides.get("model__transformer", True))
    expect_d = method in ("canet", "sassnet") and overrides.get("loss__adversarial", True)
    assert (trainer.discriminator is not None) == expect_d
    if expect_d:
        expect_se = method == "canet" and overrides.get("discriminator__se", True)
        assert (trainer.discriminator.se is not None) == expect_se
        changed_d = [k for k, v in trainer.discriminator.state_dict().items() if not torch.equal(v, d0[k])]
        assert changed_d, "the discriminator step did not update D"
    assert (trainer.teacher is not None) == (method in ("mt", "uamt"))

    changed = [k for k, v in gen.state_dict().items() if not torch.equal(v, g0[k])]
    assert any(k.startswith("head_seg") for k in changed)
    sdf_head_trained = any(k.startswith("head_sdf.weight") for k in changed)
    sdf_used = method in ("canet", "sassnet") and (
        overrides.get("loss__sdf", True) or overrides.get("loss__adversarial", True)
    )
    assert sdf_head_trained == sdf_used
    if trainer.teacher is not None:
        # EMA at step 0 has alpha = 0: the teacher's weights become the student's.
        for (k, t), (_, s) in zip(trainer.teacher.named_parameters(), gen.named_parameters()):
            assert torch.equal(t, s), k
        assert any(not torch.equal(v, t0[k]) for k, v in trainer.teacher.state_dict().items())

    # Logged values: finite, and the terms each method has.
    logs = result.logs
    assert math.isfinite(logs["loss"]) and logs["lr"] == pytest.approx(0.01)
    if cfg.loss.sdf is not False and method in ("canet", "sassnet"):
        assert logs["loss_sdf"] > 0
    if expect_d:
        assert logs["adv_weight"] == pytest.approx(0.01 * math.exp(-5)) and logs["loss_d"] > 0
    if method in ("mt", "uamt"):
        assert logs["cons_weight"] == pytest.approx(0.1 * math.exp(-5))
    if method == "uamt":
        assert 0.0 <= logs["kept"] <= 1.0 and logs["threshold"] < math.log(2)

    # The checkpoint holds the training state and canet.load_model reads its generator.
    payload = load_checkpoint(result.last_checkpoint)
    assert payload["iteration"] == 1 and payload["created_by"] == "canet.training.Trainer"
    assert payload["config"]["method"] == method
    assert (payload["discriminator"] is not None) == expect_d
    assert (payload["teacher"] is not None) == (method in ("mt", "uamt"))
    model = canet.load_model(result.last_checkpoint)
    for k, v in model.state_dict().items():
        assert torch.equal(v, gen.state_dict()[k])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_one_iteration_cuda_amp(amp: str, make_config, tmp_path: Path) -> None:
    cfg = make_config("canet", iterations=2, train__device="cuda", train__amp=amp, train__channels_last=True)
    result = Trainer(cfg, tmp_path / "run", quiet=True, log=lambda m: None).run()
    assert math.isfinite(result.logs["loss"]) and math.isfinite(result.logs["loss_d"])
    payload = load_checkpoint(result.last_checkpoint)
    assert (payload["scalers"]["generator"] is not None) == (amp == "fp16")
    assert all(v.device.type == "cpu" for v in payload["generator"].values())
    canet.load_model(result.last_checkpoint)


def test_amp_needs_cuda(make_config, tmp_path: Path) -> None:
    from canet.errors import ConfigError

    with pytest.raises(ConfigError, match="train.amp 'bf16' needs a CUDA device, got cpu"):
        Trainer(make_config("canet", train__amp="bf16"), tmp_path / "run", quiet=True).setup()


@pytest.fixture(scope="module")
def three_class_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datalist of 4 training cases (2 labeled) of 32^3 voxels whose labels hold classes 1 and 2."""
    import json

    import nibabel as nib
    import numpy as np

    root = tmp_path_factory.mktemp("three")
    rng = np.random.default_rng(3)
    entries = []
    for i in range(4):
        label = np.zeros((32, 32, 32), np.uint8)
        label[4:14, 6:16, 8:20] = 1
        label[18:28, 14:26, 10:22] = 2
        image = (label * 1.5 + rng.normal(size=label.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / f"c{i}_seg.nii.gz"))
        entries.append({"image": f"c{i}.nii.gz", "label": f"c{i}_seg.nii.gz"})
    path = root / "dataset.json"
    path.write_text(json.dumps({"num_classes": 3, "training": entries}))
    return path


@pytest.mark.parametrize("method", ["canet", "sassnet", "vnet", "mt", "uamt"])
def test_one_iteration_with_three_classes(method: str, three_class_data: Path, make_config, tmp_path: Path) -> None:
    """Every method trains on a 3-class label map: softmax channels, K-channel SDM and discriminator input,
    UA-MT's threshold from ln 3 (no test trained with more than two classes before)."""
    cfg = make_config(method, data__root=str(three_class_data), data__num_classes=3)
    trainer = Trainer(cfg, tmp_path / "run", quiet=True, log=lambda m: None)
    result = trainer.run()
    assert result.iteration == 1
    gen = trainer.generator
    assert gen.head_seg.out_channels == 3
    if method in ("canet", "sassnet"):
        assert gen.head_sdf.out_channels == 3 and trainer.discriminator.map_channels == 3
        assert math.isfinite(result.logs["loss_sdf"]) and result.logs["loss_sdf"] > 0
        assert math.isfinite(result.logs["loss_d"])
    logs = result.logs
    assert math.isfinite(logs["loss"]) and math.isfinite(logs["loss_dice"])
    if method == "uamt":  # the binary threshold is below ln 2; three classes' starts at 0.75 ln 3 > ln 2
        assert math.log(2) < logs["threshold"] < math.log(3)
    model = canet.load_model(result.last_checkpoint)
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 32, 32, 32))
    assert out.seg.shape == (1, 3, 32, 32, 32)
