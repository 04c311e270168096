"""Mean teacher (MT) and uncertainty-aware mean teacher (UA-MT, Yu et al. 2019).

The teacher is an exponential moving average of the student's weights
(``alpha = min(1 - 1 / (step + 1), ema_decay)`` as UA-MT, so it starts as a
copy); it sees the unlabeled cases with added noise
``clip(N(0, noise_std^2), -noise_clip, noise_clip)`` and runs, like UA-MT's, in
training mode (dropout on, batch statistics) without gradients. The student is
pulled towards the teacher's probabilities on the unlabeled cases by an MSE
consistency loss weighted ``consistency * sigmoid_rampup(iteration // 150, 40)``;
UA-MT keeps only the voxels where the entropy of the mean of T noisy teacher
predictions is below ``(0.75 + 0.25 * sigmoid_rampup(iteration, iterations)) * ln K``
(``ln 2`` for a binary task, as UA-MT; ``K`` classes otherwise). ``iterations``
is the run's total, so a finished run extended with ``--resume --iterations``
follows the longer ramp from then on and differs from a run trained to the new
total from the start.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from canet.losses import (
    consistency_mse,
    masked_consistency,
    predictive_entropy,
    probabilities,
    rampup_weight,
    uncertainty_threshold,
)
from canet.models import SegOutput
from canet.training.methods.base import Method, StepContext


def _seg(out: Any) -> Tensor:
    return out.seg if isinstance(out, SegOutput) else out[0]


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float, step: int) -> None:
    """``teacher = alpha * teacher + (1 - alpha) * student`` with ``alpha = min(1 - 1/(step+1), decay)``.

    Only parameters are averaged (buffers such as BatchNorm statistics are the
    teacher's own, as in UA-MT).
    """
    alpha = min(1.0 - 1.0 / (step + 1), decay)
    t_params = list(teacher.parameters())
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(
            f"teacher has {len(t_params)} parameter tensors, student {len(s_params)}"
        )
    # Two fused calls over all tensors (one kernel launch per group on CUDA) with
    # the same arithmetic as the per-parameter ``mul_(alpha).add_(s, 1 - alpha)``.
    torch._foreach_mul_(t_params, alpha)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - alpha)


class MeanTeacherMethod(Method):
    """``mt``: supervised ``0.5 * (Dice + CE)`` plus the mean-teacher consistency."""

    name: ClassVar[str] = "mt"
    arch: ClassVar[str] = "vnet"
    has_teacher: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {
        "model.transformer": False,
        "loss.seg_ce": True,
        "loss.sdf": False,
        "loss.adversarial": False,
    }
    extra_log_keys: ClassVar[tuple[str, ...]] = ("loss_cons", "cons_weight")

    @property
    def uses_teacher(self) -> bool:
        return True

    def build_teacher(self, student: nn.Module) -> nn.Module:
        """A copy of the student whose parameters take no gradient."""
        teacher = copy.deepcopy(student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def noisy(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        """``x + clip(N(0, noise_std^2), -noise_clip, noise_clip)``."""
        t = self.cfg.teacher
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) * t.noise_std
        return x + noise.clamp(-t.noise_clip, t.noise_clip)

    def consistency_weight(self, iteration: int) -> float:
        lc = self.cfg.loss
        return rampup_weight(iteration, lc.consistency, lc.rampup_length, lc.rampup_interval)

    def teacher_logits(self, ctx: StepContext, unlabeled: Tensor) -> Tensor:
        assert ctx.teacher is not None
        with torch.no_grad(), ctx.autocast():
            return _seg(ctx.teacher(self.noisy(unlabeled, ctx.generator))).float()

    def consistency_loss(self, ctx: StepContext, student_logits: Tensor, unlabeled: Tensor) -> Tensor:
        return consistency_mse(student_logits, self.teacher_logits(ctx, unlabeled))

    def generator_loss(self, ctx: StepContext) -> Tensor:
        loss = self.supervised_loss(ctx)
        lbs = ctx.labeled_bs
        if lbs < ctx.image.shape[0]:
            if ctx.teacher is None:
                raise RuntimeError(f"method {self.name!r} needs its teacher")
            student = ctx.output.seg[lbs:].float()
            loss_cons = self.consistency_loss(ctx, student, ctx.image[lbs:])
            weight = self.consistency_weight(ctx.iteration)
            ctx.logs["loss_cons"] = loss_cons.detach()
            ctx.logs["cons_weight"] = weight
            loss = loss + weight * loss_cons
        ctx.logs["loss"] = loss.detach()
        return loss

    def after_step(self, ctx: StepContext, student: nn.Module) -> None:
        assert ctx.teacher is not None
        ema_update(ctx.teacher, student, self.cfg.teacher.ema_decay, ctx.iteration)


class UAMTMethod(MeanTeacherMethod):
    """``uamt``: consistency only where the teacher's predictive entropy is low."""

    name: ClassVar[str] = "uamt"
    extra_log_keys: ClassVar[tuple[str, ...]] = ("loss_cons", "cons_weight", "threshold", "kept")

    def uncertainty(self, ctx: StepContext, unlabeled: Tensor) -> Tensor:
        """Entropy of the mean of ``teacher.passes`` noisy teacher predictions, ``B x 1 x X x Y x Z``.

        As UA-MT, the passes run two at a time on the unlabeled batch repeated twice.
        """
        assert ctx.teacher is not None
        passes = self.cfg.teacher.passes
        reps = 2 if passes % 2 == 0 else 1
        total: Tensor | None = None
        with torch.no_grad():
            stacked = unlabeled.repeat(reps, 1, 1, 1, 1)
            for _ in range(passes // reps):
                with ctx.autocast():
                    logits = _seg(ctx.teacher(self.noisy(stacked, ctx.generator))).float()
                probs = probabilities(logits)
                part = probs.view(reps, unlabeled.shape[0], *probs.shape[1:]).sum(0)
                total = part if total is None else total + part
        assert total is not None
        return predictive_entropy(total / passes)

    def consistency_loss(self, ctx: StepContext, student_logits: Tensor, unlabeled: Tensor) -> Tensor:
        teacher_logits = self.teacher_logits(ctx, unlabeled)
        unc = self.uncertainty(ctx, unlabeled)
        classes = max(2, int(student_logits.shape[1]))  # one sigmoid channel: 2 classes
        threshold = uncertainty_threshold(ctx.iteration, self.cfg.iterations, classes)
        ctx.logs["threshold"] = threshold
        ctx.logs["kept"] = (unc < threshold).float().mean().detach()
        return masked_consistency(student_logits, teacher_logits, unc, threshold)
