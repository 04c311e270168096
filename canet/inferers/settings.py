"""How volumes are predicted: one settings object from the command line to the windows.

:class:`InferenceSettings` holds every choice of whole-volume inference and is
handed as one object through :func:`canet.inferers.predict_volume`,
:func:`canet.evaluation.evaluate_model`, :func:`canet.evaluation.evaluate`,
:func:`canet.evaluation.predict_files` and the trainer's validation. Its values
are checked when it is made, so a bad one ends in one line before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from canet.device import resolve_device
from canet.errors import CanetError
from canet.inferers.sliding_window import check_mode_and_weighting

#: Autocast of the network's forward pass: ``none`` (fp32) or ``bf16`` (CUDA only).
AMP_CHOICES: tuple[str, ...] = ("none", "bf16")

#: How a one-channel network's windows become a mask: ``probability`` (canet:
#: average sigmoid(logit) over the windows, keep > threshold) or ``relu`` (the
#: authors' CA-Net test code: average max(logit, 0), keep > threshold; reference mode only).
DECISIONS: tuple[str, ...] = ("probability", "relu")

__all__ = ["AMP_CHOICES", "DECISIONS", "InferenceSettings", "check_amp"]


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse, in one line, an autocast the device cannot run.

    ``bf16`` needs a CUDA device whose GPU computes in bf16 (as training's
    ``train.amp``, inference keeps the CPU in fp32).

    Raises:
        CanetError: an unknown ``amp``, or ``bf16`` on the CPU or on a GPU without bf16.
    """
    if amp not in AMP_CHOICES:
        raise CanetError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "none":
        return
    if device.type != "cuda":
        raise CanetError(f"amp {amp!r} needs a CUDA device, got {device}")
    if not torch.cuda.is_bf16_supported():
        raise CanetError(f"amp {amp!r} needs a GPU that computes in bf16; {torch.cuda.get_device_name(device)} does not")


@dataclass(frozen=True)
class InferenceSettings:
    """Every choice of whole-volume inference (checked when made).

    Attributes:
        mode: ``"fast"`` (default) or ``"reference"`` (the literature's windows,
            see :mod:`canet.inferers.sliding_window`).
        overlap: fast mode: fraction of a window shared with its neighbour, in [0, 1) (0.5).
        weighting: fast mode: ``"gaussian"`` (default) or ``"constant"``.
        sw_batch_size: windows per forward pass (4).
        tta: also average over the 8 flips of the spatial axes (off).
        lcc: keep the largest connected component (per class); None (default):
            the user's default: the dataset's in ``evaluate``, the checkpoint's
            in ``predict``, on in :func:`~canet.inferers.predict_volume` and
            :func:`~canet.evaluation.evaluate_model`.
        device: where the network runs: ``"auto"`` (default: CUDA if
            available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None
            keeps the model's device.
        amp: ``"none"`` (default: fp32, in both modes) or ``"bf16"`` autocast of
            the network (CUDA only, refused elsewhere).
        sums_on_cpu: keep the sliding-window sums in CPU memory instead of on
            the network's device (default off: they stay on the device and come
            back once per volume; for volumes whose sums do not fit in GPU memory).
        threshold: foreground threshold of one-channel networks (0.5).
        channels_last: run the network in ``channels_last_3d`` memory format;
            None (default): on in fast mode, off in reference mode.
        decision: ``"probability"`` (default: the windows' sigmoid
            probabilities are averaged and thresholded) or ``"relu"`` (the rule of
            the authors' CA-Net test code: ``max(logit, 0)`` averaged over the
            windows and thresholded at ``threshold``, i.e. logit > 0.5 where the
            windows agree, probability > 0.62). ``relu`` needs a one-channel
            network and reference mode; the "probabilities" it returns are the
            averaged ReLU values.
    """

    mode: str = "fast"
    overlap: float = 0.5
    weighting: str = "gaussian"
    sw_batch_size: int = 4
    tta: bool = False
    lcc: bool | None = None
    device: str | None = "auto"
    amp: str = "none"
    sums_on_cpu: bool = False
    threshold: float = 0.5
    channels_last: bool | None = None
    decision: str = "probability"

    def __post_init__(self) -> None:
        if isinstance(self.device, torch.device):
            object.__setattr__(self, "device", str(self.device))
        check_mode_and_weighting(self.mode, self.weighting)
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)) or not 0.0 <= self.overlap < 1.0:
            raise CanetError(f"overlap must be in [0, 1), got {self.overlap!r}")
        size = self.sw_batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise CanetError(f"sw_batch_size must be a positive integer, got {size!r}")
        if self.amp not in AMP_CHOICES:
            raise CanetError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        if self.decision not in DECISIONS:
            raise CanetError(f"decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}")
        if self.decision == "relu" and self.mode != "reference":
            raise CanetError("decision 'relu' is the authors' reference-mode rule; use it with mode 'reference'")
        if self.device is not None and not isinstance(self.device, str):
            raise CanetError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def make(cls, settings: InferenceSettings | None = None, **changes: Any) -> InferenceSettings:
        """``settings`` (default: the defaults) with the fields named in ``changes`` replaced.

        Raises:
            CanetError: ``settings`` is not an :class:`InferenceSettings`, a name is
                not a field, or a value is bad.
        """
        if settings is None:
            settings = cls()
        elif not isinstance(settings, InferenceSettings):
            raise CanetError(f"settings must be an InferenceSettings, got {settings!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise CanetError(f"unknown inference setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
        return dataclasses.replace(settings, **changes) if changes else settings

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with the named fields changed (checked like a new object)."""
        return InferenceSettings.make(self, **changes)

    def run_device(self, model_device: torch.device | None = None) -> torch.device:
        """The device the network runs on, with ``amp`` checked against it.

        Args:
            model_device: the model's device, used when ``device`` is None.

        Raises:
            ConfigError: ``device`` names no device, or CUDA where there is none.
            CanetError: ``amp`` is not possible on that device (see :func:`check_amp`).
        """
        if self.device is None:
            device = model_device if model_device is not None else torch.device("cpu")
        else:
            device = resolve_device(self.device, key="device")
        check_amp(self.amp, device)
        return device

    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the network's forward pass (None: fp32)."""
        return torch.bfloat16 if self.amp == "bf16" else None

    def record(self, device: torch.device | None = None) -> dict[str, Any]:
        """What ``summary.json`` records of these settings.

        ``mode``, ``decision``, ``tta``, ``lcc``, ``amp``, ``sw_batch_size`` (and
        ``overlap``, ``weighting`` in fast mode), and the device the network ran on.
        """
        out: dict[str, Any] = {"mode": self.mode, "decision": self.decision, "tta": self.tta, "lcc": self.lcc}
        if self.mode == "fast":
            out.update(overlap=self.overlap, weighting=self.weighting)
        out.update(amp=self.amp, sw_batch_size=self.sw_batch_size)
        if device is not None:
            out["device"] = str(device)
        return out
