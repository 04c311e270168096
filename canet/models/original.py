"""Import of checkpoints trained with the authors' CA-Net code.

The original generator's state dict (keys and shapes in
``shared/reference/canet_generator_state_dict.tsv``) is renamed onto
:class:`~canet.models.transvnet.TransVNet`:

==============================================  =====================================
original                                        canet
==============================================  =====================================
``block_one`` .. ``block_five``                 ``enc1`` .. ``enc5``
``block_one_dw`` .. ``block_four_dw``           ``down1`` .. ``down4``
``block_five_up``, ``block_six_up``, ...        ``up4``, ``up3``, ``up2``, ``up1``
``block_six``, ``block_seven``, ...             ``dec4``, ``dec3``, ``dec2``, ``dec1``
``<stage>.conv.{3i}`` / ``.conv.{3i+1}``        ``<stage>.{i}.conv`` / ``.{i}.bn``
``<dw|up>.conv.0`` / ``.conv.1``                ``<down|up>.conv`` / ``.bn``
``out_conv`` (tanh head) / ``out_conv2``        ``head_sdf`` / ``head_seg``
``embeddings.patch_embeddings``                 ``transformer.embed``
``embeddings.position_embeddings``              ``transformer.pos_embed``
``transformer.layer.{i}.attention_norm``        ``transformer.blocks.{i}.norm1``
``transformer.layer.{i}.attn.query|key|value``  ``transformer.blocks.{i}.attn.qkv``
                                                (stacked ``[query; key; value]``)
``transformer.layer.{i}.attn.out``              ``transformer.blocks.{i}.attn.proj``
``transformer.layer.{i}.ffn_norm``              ``transformer.blocks.{i}.norm2``
``transformer.layer.{i}.ffn.fc1|fc2``           ``transformer.blocks.{i}.mlp.fc1|fc2``
``transformer.encoder_norm``                    ``transformer.norm``
``detransformer.conv_more.0`` / ``.1``          ``transformer.fold.conv`` / ``.bn``
==============================================  =====================================

The original discriminator (``conv0`` .. ``conv4``, ``classifier``) maps onto
:class:`~canet.models.dam.DAM` (``map_conv``, ``image_conv``, ``down1`` ..
``down3``, ``classifier``); it has no SE weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from canet.checkpoint import FORMAT, make_checkpoint, read_torch_file, save_checkpoint
from canet.errors import CheckpointError, ConfigError
from canet.models.common import DOWNSAMPLE_FACTOR
from canet.models.loading import nonfinite_tensors
from canet.models.registry import create_model
from canet.patch_size import check_patch_size

#: Token count of the original position embedding, and the patch it belongs to.
ORIGINAL_TOKENS = 245
ORIGINAL_PATCH = (112, 112, 80)

_STAGES = {
    "block_one": "enc1",
    "block_two": "enc2",
    "block_three": "enc3",
    "block_four": "enc4",
    "block_five": "enc5",
    "block_six": "dec4",
    "block_seven": "dec3",
    "block_eight": "dec2",
    "block_nine": "dec1",
}
_RESAMPLERS = {
    "block_one_dw": "down1",
    "block_two_dw": "down2",
    "block_three_dw": "down3",
    "block_four_dw": "down4",
    "block_five_up": "up4",
    "block_six_up": "up3",
    "block_seven_up": "up2",
    "block_eight_up": "up1",
}
_PREFIXES = {
    "out_conv.": "head_sdf.",  # 1x1x1 conv feeding the tanh head
    "out_conv2.": "head_seg.",  # segmentation logits
    "embeddings.patch_embeddings.": "transformer.embed.",
    "transformer.encoder_norm.": "transformer.norm.",
    "detransformer.conv_more.0.": "transformer.fold.conv.",
    "detransformer.conv_more.1.": "transformer.fold.bn.",
}
_BLOCK_PARTS = {
    "attention_norm": "norm1",
    "ffn_norm": "norm2",
    "ffn.fc1": "mlp.fc1",
    "ffn.fc2": "mlp.fc2",
    "attn.out": "attn.proj",
}
_QKV = ("query", "key", "value")
_DISCRIMINATOR = {
    "conv0": "map_conv",
    "conv1": "image_conv",
    "conv2": "down1",
    "conv3": "down2",
    "conv4": "down3",
    "classifier": "classifier",
}

_STAGE_RE = re.compile(r"^(block_[a-z_]+)\.conv\.(\d+)\.(.+)$")
_LAYER_RE = re.compile(r"^transformer\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def _rename_generator_key(key: str) -> str | None:
    """canet name of an original generator key (``None`` for q/k/v, handled apart).

    Raises:
        CheckpointError: the key belongs to no part of the original generator.
    """
    m = _STAGE_RE.match(key)
    if m:
        block, index, param = m.group(1), int(m.group(2)), m.group(3)
        if block in _STAGES:
            # Sequential(conv, bn, relu, conv, bn, relu, ...): layer i = 3i (conv), 3i+1 (bn).
            layer, part = divmod(index, 3)
            if part in (0, 1):
                return f"{_STAGES[block]}.{layer}.{'conv' if part == 0 else 'bn'}.{param}"
        elif block in _RESAMPLERS and index in (0, 1):
            return f"{_RESAMPLERS[block]}.{'conv' if index == 0 else 'bn'}.{param}"
    if key == "embeddings.position_embeddings":
        return "transformer.pos_embed"
    for old, new in _PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    m = _LAYER_RE.match(key)
    if m:
        layer, part, param = m.groups()
        if part in _BLOCK_PARTS:
            return f"transformer.blocks.{layer}.{_BLOCK_PARTS[part]}.{param}"
        if part in (f"attn.{n}" for n in _QKV):
            return None
    raise CheckpointError(f"key {key!r} is not part of the original CA-Net generator")


def convert_generator_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original generator state dict to :class:`TransVNet` names.

    The per-block ``query``/``key``/``value`` projections are stacked (in that
    order, along the output features) into one ``qkv`` projection. The result
    has one key per model key; tensors are not copied except the stacked ones.

    Raises:
        CheckpointError: an unknown key, or a block with some but not all of
            ``query``, ``key``, ``value``.
    """
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        new = _rename_generator_key(key)
        if new is not None:
            out[new] = value
            continue
        m = _LAYER_RE.match(key)
        assert m is not None  # only q/k/v keys of a layer return None
        layer, part, param = m.groups()
        qkv.setdefault((layer, param), {})[part.split(".")[1]] = value
    for (layer, param), parts in sorted(qkv.items()):
        missing = [n for n in _QKV if n not in parts]
        if missing:
            raise CheckpointError(
                f"transformer layer {layer} has no attn.{missing[0]}.{param} (needs query, key and value)"
            )
        shapes = {tuple(parts[n].shape[1:]) for n in _QKV}
        if len(shapes) != 1:
            raise CheckpointError(
                f"transformer layer {layer}: attn query/key/value {param} shapes differ: "
                f"{[tuple(parts[n].shape) for n in _QKV]}"
            )
        out[f"transformer.blocks.{layer}.attn.qkv.{param}"] = torch.cat([parts[n] for n in _QKV])
    return out


def convert_discriminator_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an original discriminator state dict to :class:`DAM` names.

    Raises:
        CheckpointError: a key that the original discriminator does not have.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        head, _, param = key.partition(".")
        if head not in _DISCRIMINATOR or param not in ("weight", "bias"):
            raise CheckpointError(f"key {key!r} is not part of the original CA-Net discriminator")
        out[f"{_DISCRIMINATOR[head]}.{param}"] = value
    return out


def extract_state_dict(obj: object, source: str = "checkpoint") -> dict[str, Tensor]:
    """The state dict inside a loaded file: the dict itself, or under ``state_dict``/``model``.

    A ``module.`` prefix on every key (from ``nn.DataParallel``) is removed.

    Raises:
        CheckpointError: a canet checkpoint, not a dict, or values that are not tensors.
    """
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        raise CheckpointError(
            f"{source} is already a canet checkpoint; load it with canet.load_model, no import needed"
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            obj = inner
            break
    if not obj:
        raise CheckpointError(f"{source} holds an empty dict, not a state dict")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source} is not a state dict: key {key!r} is not a string")
        if not isinstance(value, Tensor):
            raise CheckpointError(
                f"{source} is not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
    if all(k.startswith("module.") for k in obj):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load a state dict file with ``torch.load(..., weights_only=True)`` (see :func:`extract_state_dict`).

    Raises:
        CheckpointError: missing file, not a PyTorch file, unreadable (see
            :func:`canet.checkpoint.read_torch_file`), or not a state dict.
    """
    p = Path(path)
    return extract_state_dict(read_torch_file(p, map_location="cpu"), source=str(p))


def _require(state_dict: Mapping[str, Tensor], key: str, source: str) -> Tensor:
    if key not in state_dict:
        first = next(iter(state_dict))
        raise CheckpointError(
            f"{source} is not an original CA-Net generator state dict: no {key!r} "
            f"(it has {len(state_dict)} keys, the first {first!r})"
        )
    return state_dict[key]


def infer_generator_kwargs(
    state_dict: Mapping[str, Tensor],
    patch_size: Sequence[int] | None = None,
    source: str = "state dict",
) -> dict[str, Any]:
    """``create_model("canet", **kwargs)`` arguments that fit an original generator state dict.

    ``in_channels`` and ``n_filters`` come from the first conv, ``num_classes``
    from the segmentation head (1 channel -> 2 classes, ``C >= 3`` channels -> C),
    ``patch_size`` from the position embedding: 245 tokens are the original
    112x112x80 patch; any other token count needs ``patch_size`` with
    ``(X/16) * (Y/16) * (Z/16)`` equal to it.

    Raises:
        CheckpointError: a key the inference needs is missing or has a bad shape.
        ConfigError: ``patch_size`` is invalid or does not fit the token count.
    """
    first = _require(state_dict, "block_one.conv.0.weight", source)
    head = _require(state_dict, "out_conv2.weight", source)
    pos = _require(state_dict, "embeddings.position_embeddings", source)
    if first.dim() != 5 or head.dim() != 5 or pos.dim() != 3:
        raise CheckpointError(
            f"{source}: unexpected shapes for block_one.conv.0.weight {tuple(first.shape)}, "
            f"out_conv2.weight {tuple(head.shape)} or position_embeddings {tuple(pos.shape)}"
        )
    n_out = int(head.shape[0])
    if n_out == 2:
        raise CheckpointError(
            f"{source}: the segmentation head has 2 channels; canet's binary generators use "
            "1 sigmoid channel and multi-class ones >= 3 softmax channels"
        )
    num_classes = 2 if n_out == 1 else n_out
    tokens = int(pos.shape[1])
    if patch_size is None:
        if tokens != ORIGINAL_TOKENS:
            raise ConfigError(
                f"{source}: the position embedding has {tokens} tokens, not the original "
                f"{ORIGINAL_TOKENS} (112x112x80); give the training patch size (--patch-size X Y Z) "
                f"with (X/16)*(Y/16)*(Z/16) = {tokens}"
            )
        patch = ORIGINAL_PATCH
    else:
        patch = check_patch_size(tuple(patch_size), multiple=DOWNSAMPLE_FACTOR)
        grid = [s // DOWNSAMPLE_FACTOR for s in patch]
        if grid[0] * grid[1] * grid[2] != tokens:
            raise ConfigError(
                f"patch_size {patch} gives {grid[0] * grid[1] * grid[2]} tokens, but the "
                f"position embedding of {source} has {tokens}"
            )
    return {
        "in_channels": int(first.shape[1]),
        "num_classes": num_classes,
        "n_filters": int(first.shape[0]),
        "patch_size": patch,
    }


def _fit_state_dict(model: nn.Module, converted: Mapping[str, Tensor], source: str, what: str) -> None:
    """Strictly load ``converted`` into ``model``; any key or shape mismatch is a CheckpointError."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        raise CheckpointError(f"{source} does not fit the {what}: keys " + ", ".join(parts))
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source} does not fit the {what}: {key} has shape {tuple(value.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(converted, strict=True)


def generator_from_original(
    state_dict: Mapping[str, Tensor],
    patch_size: Sequence[int] | None = None,
    source: str = "state dict",
) -> nn.Module:
    """Build ``create_model("canet", ...)`` and load an original generator state dict into it.

    Every original key maps to one canet key and every canet key is filled
    (strict loading). Returns the model in eval mode on the CPU.

    Raises:
        CheckpointError: the state dict is not an original CA-Net generator's.
        ConfigError: ``patch_size`` does not fit (see :func:`infer_generator_kwargs`).
    """
    kwargs = infer_generator_kwargs(state_dict, patch_size, source)
    try:
        converted = convert_generator_state_dict(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    try:
        model = create_model("canet", **kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{source}: cannot build a canet generator from it: {exc}") from None
    _fit_state_dict(model, converted, source, "original CA-Net generator")
    return model.eval()


def discriminator_from_original(
    state_dict: Mapping[str, Tensor], se: bool = False, source: str = "state dict"
) -> nn.Module:
    """Build ``create_model("dam", ...)`` and load an original discriminator state dict.

    With ``se=False`` (the original layout) loading is strict. With ``se=True``
    the SE weights, absent from the original, keep their fresh initialization.
    Returns the model in eval mode.

    Raises:
        CheckpointError: the state dict is not an original CA-Net discriminator's.
    """
    for key in ("conv0.weight", "conv1.weight"):
        if key not in state_dict or state_dict[key].dim() != 5:
            raise CheckpointError(f"{source} is not an original CA-Net discriminator: no 5-D {key!r}")
    conv0, conv1 = state_dict["conv0.weight"], state_dict["conv1.weight"]
    model = create_model(
        "dam",
        image_channels=int(conv1.shape[1]),
        map_channels=int(conv0.shape[1]),
        ndf=int(conv0.shape[0]),
        se=se,
    )
    try:
        converted = convert_discriminator_state_dict(state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if se:
        converted = {**{k: v for k, v in model.state_dict().items() if k.startswith("se.")}, **converted}
    _fit_state_dict(model, converted, source, "original CA-Net discriminator")
    return model.eval()


def import_checkpoint(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    patch_size: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Convert an original CA-Net generator checkpoint ``src`` into a canet checkpoint ``dst``.

    ``src`` is a ``torch.save``-d state dict (or a dict holding one under
    ``state_dict`` or ``model``). ``dst`` is written atomically and holds model
    ``"canet"`` with the inferred kwargs; ``canet.load_model(dst)`` rebuilds it.

    Returns:
        The model spec written (``{"name": "canet", "kwargs": {...}}``) plus
        ``"parameters"`` (parameter count) and ``"warnings"`` (lines for the user: a
        ``patch_size`` that permutes the original 112x112x80, whose token count
        fits but whose layout of the position embedding is another).

    Raises:
        CheckpointError: ``src`` is missing, unreadable or not such a state dict,
            or ``dst`` is ``src``.
        ConfigError: ``patch_size`` is needed or does not fit.
    """
    src_path, dst_path = Path(src), Path(dst)
    if src_path.exists() and dst_path.exists() and src_path.resolve() == dst_path.resolve():
        raise CheckpointError(f"destination {dst_path} is the source file; choose another path")
    state_dict = read_state_dict(src_path)
    bad = nonfinite_tensors(state_dict)
    if bad:
        raise CheckpointError(f"{src_path}: {len(bad)} weight tensor(s) hold NaN or infinite values (first {bad[0]!r})")
    model = generator_from_original(state_dict, patch_size=patch_size, source=str(src_path))
    payload = make_checkpoint(
        model, created_by="canet import-checkpoint", config=None, source=str(src_path)
    )
    save_checkpoint(payload, dst_path)
    patch = tuple(payload["model"]["kwargs"]["patch_size"])
    warnings = []
    if patch != ORIGINAL_PATCH and sorted(patch) == sorted(ORIGINAL_PATCH):
        # Same token count, other layout: the position embedding is read in another order.
        grid = "x".join(str(s // DOWNSAMPLE_FACTOR) for s in patch)
        warnings.append(
            f"--patch-size {' '.join(map(str, patch))} lays the {ORIGINAL_TOKENS} position-embedding tokens out as a "
            f"{grid} grid, the original 112x112x80 patch as 7x7x5; if the model was trained at 112x112x80, "
            "import it again without --patch-size"
        )
    return {**payload["model"], "parameters": sum(p.numel() for p in model.parameters()), "warnings": warnings}
