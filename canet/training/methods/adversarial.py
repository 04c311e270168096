"""CA-Net and SASSNet: supervised Dice + SDF loss, and an adversarial loss on unlabeled cases.

The generator's tanh head predicts the SDM; a discriminator classifies
(SDM, image) pairs as coming from labeled (class 1) or unlabeled (class 0)
cases. The generator is pushed to make its unlabeled predictions look
"labeled", with the weight ``adv_weight * sigmoid_rampup(iteration // 150, 40)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canet.losses import adversarial_weight
from canet.models import create_model
from canet.training.methods.base import Method, StepContext


def domain_targets(batch_size: int, labeled_bs: int, device: torch.device) -> Tensor:
    """Discriminator classes of a batch: 1 for the first ``labeled_bs`` rows, 0 after."""
    target = torch.zeros(batch_size, dtype=torch.long, device=device)
    target[:labeled_bs] = 1
    return target


class AdversarialSDFMethod(Method):
    """Shared strategy of ``canet`` and ``sassnet`` (they differ in defaults only)."""

    has_discriminator: ClassVar[bool] = True
    extra_log_keys: ClassVar[tuple[str, ...]] = ("loss_adv", "adv_weight", "loss_d")

    @property
    def uses_discriminator(self) -> bool:
        return bool(self.cfg.loss.adversarial)

    def build_discriminator(self) -> nn.Module | None:
        if not self.uses_discriminator:
            return None
        d = self.cfg.discriminator
        return create_model(
            "dam",
            image_channels=1,
            map_channels=self.channels,
            ndf=d.ndf,
            se=bool(d.se),
            dropout=d.dropout,
        )

    def generator_loss(self, ctx: StepContext) -> Tensor:
        loss = self.supervised_loss(ctx)
        if self.uses_discriminator and ctx.labeled_bs < ctx.image.shape[0]:
            if ctx.discriminator is None:
                raise RuntimeError("the adversarial loss is on but no discriminator was given")
            lbs = ctx.labeled_bs
            sdf_u = ctx.output.sdf[lbs:]
            logits = ctx.discriminator(sdf_u.to(ctx.image.dtype), ctx.image[lbs:]).float()
            # The generator wants its unlabeled predictions classified as "labeled" (1).
            target = torch.ones(logits.shape[0], dtype=torch.long, device=logits.device)
            loss_adv = F.cross_entropy(logits, target)
            lc = self.cfg.loss
            weight = adversarial_weight(ctx.iteration, lc.adv_weight, lc.rampup_length, lc.rampup_interval)
            ctx.logs["loss_adv"] = loss_adv.detach()
            ctx.logs["adv_weight"] = weight
            loss = loss + weight * loss_adv
        ctx.logs["loss"] = loss.detach()
        return loss

    def discriminator_loss(
        self, discriminator: nn.Module, sdf: Tensor, image: Tensor, labeled_bs: int
    ) -> Tensor:
        """``CE(D(sdf, image), [1] * labeled_bs + [0] * rest)``; ``sdf`` carries no gradient."""
        logits = discriminator(sdf.to(image.dtype), image).float()
        return F.cross_entropy(logits, domain_targets(image.shape[0], labeled_bs, logits.device))


class CANetMethod(AdversarialSDFMethod):
    """CA-Net: Trans-V generator, DAM with SE attention, SDF and adversarial losses.

    Ablations: ``model.transformer: false``, ``discriminator.se: false``,
    ``loss.sdf: false``, ``loss.adversarial: false``.
    """

    name: ClassVar[str] = "canet"
    arch: ClassVar[str] = "canet"
    defaults: ClassVar[dict[str, Any]] = {
        "model.transformer": True,
        "discriminator.se": True,
        "loss.seg_ce": False,
        "loss.sdf": True,
        "loss.adversarial": True,
    }


class SASSNetMethod(AdversarialSDFMethod):
    """SASSNet (Li et al. 2020): V-Net generator, discriminator without SE, SDF + adversarial."""

    name: ClassVar[str] = "sassnet"
    arch: ClassVar[str] = "vnet"
    defaults: ClassVar[dict[str, Any]] = {
        "model.transformer": False,
        "discriminator.se": False,
        "loss.seg_ce": False,
        "loss.sdf": True,
        "loss.adversarial": True,
    }
