"""The strategy interface: a method supplies its networks and its losses; the loop is shared.

A :class:`Method` is built from the resolved config and the number of classes.
The :class:`canet.training.trainer.Trainer` asks it for the generator (and, if
the method has them, a discriminator and an EMA teacher), then on every
iteration calls :meth:`Method.generator_loss` on the generator's output and,
after the generator's optimizer step, :meth:`Method.discriminator_loss` (for
methods with a discriminator) and :meth:`Method.after_step` (e.g. the EMA
update). Every method shares the supervised loss of :meth:`Method.supervised_loss`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canet.losses import dice_loss, multiclass_dice_loss
from canet.models import SegOutput, create_model, out_channels
from canet.training.schema import Config

#: The generator with Trans-V's transformer (the ``model.transformer`` switch).
TRANSFORMER_ARCH = "canet"


@dataclass
class StepContext:
    """What a method sees of one training iteration.

    Attributes:
        iteration: 0-based index of the step being taken (ramp-ups use it).
        image: ``B x 1 x X x Y x Z`` float batch on the training device.
        label: ``B x X x Y x Z`` long labels (zeros for the unlabeled rows).
        sdm: ``L x C x X x Y x Z`` float SDM targets of the ``L = labeled_bs``
            labeled rows (present when the method asks for them).
        labeled_bs: the first ``labeled_bs`` rows are labeled.
        output: the generator's :class:`SegOutput` for the whole batch (float32).
        discriminator: the discriminator module itself (not DDP-wrapped), or None.
        teacher: the EMA teacher, or None.
        generator: torch RNG for the methods' own noise (on the training device).
        autocast: a context-manager factory for mixed precision (no-op without AMP).
        logs: scalars the method reports (tensors or floats), filled by the losses.
    """

    iteration: int
    image: Tensor
    label: Tensor
    sdm: Tensor | None
    labeled_bs: int
    output: SegOutput
    discriminator: nn.Module | None = None
    teacher: nn.Module | None = None
    generator: torch.Generator | None = None
    autocast: Any = None
    logs: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base strategy: supervised loss on the labeled rows.

    Class attributes (what the config checks and defaults are made of, see
    :mod:`canet.training.methods.registry`):
        name: the config's ``method``.
        arch: registered generator name (``"canet"``: Trans-V, which has the
            ``model.transformer`` switch; ``"vnet"``).
        needs_unlabeled: batches hold unlabeled rows (``data.labeled_bs <
            data.batch_size``); False: labeled rows only (``labeled_bs == batch_size``).
        has_discriminator: the method can train a discriminator, so
            ``loss.adversarial`` and ``discriminator.se`` apply to it.
        defaults: values for the config's method-dependent ``null`` keys.
        log_keys: the scalar names this method logs (metrics.csv columns, in order).
    """

    name: ClassVar[str] = ""
    arch: ClassVar[str] = "vnet"
    needs_unlabeled: ClassVar[bool] = True
    has_discriminator: ClassVar[bool] = False
    has_teacher: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {
        "model.transformer": False,
        "loss.seg_ce": False,
        "loss.sdf": False,
        "loss.adversarial": False,
    }
    base_log_keys: ClassVar[tuple[str, ...]] = ("loss", "loss_seg", "loss_dice", "loss_sdf")
    extra_log_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: Config, num_classes: int) -> None:
        self.cfg = cfg
        self.num_classes = num_classes
        self.channels = out_channels(num_classes)

    # ------------------------------------------------------------------ networks

    @property
    def uses_discriminator(self) -> bool:
        """Whether the method trains a discriminator (and takes a discriminator step)."""
        return False

    @property
    def uses_teacher(self) -> bool:
        """Whether the method keeps an EMA teacher."""
        return False

    @property
    def needs_sdm(self) -> bool:
        """Whether batches must carry ``"sdm"`` targets (the SDF loss is on)."""
        return bool(self.cfg.loss.sdf)

    @property
    def uses_sdf_head(self) -> bool:
        """Whether a loss of the generator step reads the signed-distance head.

        The SDF loss reads it on the labeled rows, the adversarial loss on the
        unlabeled ones. Where neither does, the trainer freezes the head, so that
        DDP needs no search for unused parameters.
        """
        d = self.cfg.data
        return bool(self.cfg.loss.sdf) or (self.uses_discriminator and d.labeled_bs < d.batch_size)

    @property
    def log_keys(self) -> tuple[str, ...]:
        """Scalar names logged every iteration, in column order."""
        return self.base_log_keys + self.extra_log_keys

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``create_model(self.arch, ...)``."""
        m = self.cfg.model
        kwargs: dict[str, Any] = {
            "in_channels": 1,
            "num_classes": self.num_classes,
            "n_filters": m.n_filters,
            "dropout": m.dropout,
        }
        if self.arch == TRANSFORMER_ARCH:
            kwargs["patch_size"] = list(self.cfg.data.patch_size)
            kwargs["transformer"] = bool(m.transformer)
        return kwargs

    def build_generator(self) -> nn.Module:
        """A fresh generator (the caller seeds torch first)."""
        return create_model(self.arch, **self.generator_kwargs())

    def build_discriminator(self) -> nn.Module | None:
        """A fresh discriminator, or None."""
        return None

    def build_teacher(self, student: nn.Module) -> nn.Module | None:
        """The EMA teacher of ``student``, or None (methods without a teacher)."""
        return None

    # ------------------------------------------------------------------ losses

    def supervised_loss(self, ctx: StepContext) -> Tensor:
        """Loss on the labeled rows: Dice (or ``0.5 * (Dice + CE)``) ``+ beta * MSE(sdf, SDM)``.

        Binary tasks take the sigmoid of the one output channel against
        ``label > 0``; multi-class tasks the softmax against the class labels.
        """
        lbs = ctx.labeled_bs
        seg = ctx.output.seg[:lbs].float()
        y = ctx.label[:lbs]
        if seg.shape[1] == 1:
            logits = seg[:, 0]
            target = (y > 0).float()
            dice = dice_loss(torch.sigmoid(logits), target)
            ce = F.binary_cross_entropy_with_logits(logits, target) if self.cfg.loss.seg_ce else None
        else:
            dice = multiclass_dice_loss(torch.softmax(seg, dim=1), y)
            ce = F.cross_entropy(seg, y) if self.cfg.loss.seg_ce else None
        loss_seg = dice if ce is None else 0.5 * (dice + ce)
        ctx.logs["loss_dice"] = dice.detach()
        ctx.logs["loss_seg"] = loss_seg.detach()
        loss = loss_seg
        if self.cfg.loss.sdf:
            if ctx.sdm is None:
                raise RuntimeError("the SDF loss is on but the batch carries no 'sdm' targets")
            sdf = ctx.output.sdf[:lbs].float()
            loss_sdf = F.mse_loss(sdf, ctx.sdm[:lbs].to(sdf.dtype))
            ctx.logs["loss_sdf"] = loss_sdf.detach()
            loss = loss + self.cfg.loss.beta * loss_sdf
        return loss

    def generator_loss(self, ctx: StepContext) -> Tensor:
        """The generator's total loss for one batch (logs its parts in ``ctx.logs``)."""
        loss = self.supervised_loss(ctx)
        ctx.logs["loss"] = loss.detach()
        return loss

    def discriminator_loss(self, discriminator: nn.Module, sdf: Tensor, image: Tensor, labeled_bs: int) -> Tensor:
        """Cross-entropy of the discriminator on a batch (labeled rows -> 1, others -> 0)."""
        raise NotImplementedError(f"method {self.name!r} has no discriminator")

    def after_step(self, ctx: StepContext, student: nn.Module) -> None:
        """Called after the generator's (and discriminator's) optimizer steps."""
