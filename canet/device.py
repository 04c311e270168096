"""Choosing the torch device, and the switches that decide how it computes float32 work.

``auto`` means CUDA where it is available, else the CPU (:func:`resolve_device`).

:class:`BackendFlags` names every global torch switch whose value changes what
a float32 convolution or matrix product computes, or how reproducibly: TF32 in
cuDNN convolutions and in CUDA matmuls, deterministic algorithms, and cuDNN's
benchmark search. torch keeps them per process, and their defaults are not
fp32 (``torch.backends.cudnn.allow_tf32`` is on by default), so every training
profile and every inference sets all of them itself (:meth:`BackendFlags.apply`,
or :meth:`BackendFlags.using` to put the previous values back afterwards): two
runs in one process then never inherit each other's settings. On the CPU the
TF32 and cuDNN switches change nothing; they are set all the same.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from canet.errors import ConfigError

__all__ = ["BackendFlags", "cpu_info", "inference_flags", "resolve_device", "select_device"]


def cpu_info() -> dict[str, Any]:
    """This machine's CPU: ``{"model", "cores", "flags"}``.

    ``model`` is ``/proc/cpuinfo``'s model name (elsewhere: ``platform.processor()``
    or the machine type); ``flags`` are the vector-unit flags that decide fp32
    speed (``avx*``, ``amx*``, ``fma``, ``sse4*``; empty where ``/proc/cpuinfo`` is
    missing). Benchmarks and result files record it beside their figures.
    """
    import platform
    from pathlib import Path

    model = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    named = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not named:
            model, named = value.strip(), True
        elif key.strip() == "flags":
            flags = sorted(f for f in value.split() if f.startswith(("avx", "amx", "fma", "sse4")))
            break
    return {"model": model, "cores": os.cpu_count(), "flags": flags}


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """The device ``name`` names: ``auto`` -> CUDA if available else CPU.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        key: how the setting is called in error messages (``train.device``, ``--device``).

    Raises:
        ConfigError: ``name`` is not a device, names CUDA where CUDA is not
            available, or names a GPU index this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{key} must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):  # torch also knows meta, mps, xpu, ...: canet runs on neither
        raise ConfigError(f"{key} must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} is {name!r} but CUDA is not available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"{key} is {name!r} but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1})")
    return device


def select_device(device: torch.device) -> None:
    """Make a GPU with an explicit index the process's current CUDA device (no-op otherwise).

    Without it a process that runs on ``cuda:1`` still opens a context on GPU 0
    the first time something asks for "the current device" (the pinned-memory
    thread of a DataLoader, ``torch.cuda.synchronize()``).
    """
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)


@dataclass(frozen=True)
class BackendFlags:
    """The global torch switches of one training profile or one inference.

    Attributes:
        tf32: TF32 in cuDNN convolutions (``torch.backends.cudnn.allow_tf32``)
            and CUDA matmuls (``torch.backends.cuda.matmul.allow_tf32``); off
            means true float32.
        benchmark: cuDNN times several algorithms per shape and keeps the
            fastest (``torch.backends.cudnn.benchmark``); the choice may differ
            from run to run.
        deterministic: ``torch.use_deterministic_algorithms`` (warn only, with
            ``torch.backends.cudnn.deterministic`` and cuBLAS's workspace
            setting); None leaves the process's setting as it is (inference).
    """

    tf32: bool
    benchmark: bool
    deterministic: bool | None = None

    def apply(self) -> None:
        """Set every switch (on every device; the CPU ignores the CUDA ones)."""
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.backends.cudnn.benchmark = self.benchmark
        if self.deterministic is None:
            return
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        torch.backends.cudnn.deterministic = self.deterministic
        # Deterministic mode would also fill every new tensor with NaN, which costs
        # up to 6x per CPU step; results do not depend on that memory.
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Apply these flags inside the block; put the process's previous ones back after it."""
        before = _snapshot()
        self.apply()
        try:
            yield
        finally:
            _restore(before)

    @staticmethod
    def current() -> dict[str, Any]:
        """The process's present values of every switch (for records and tests)."""
        return _snapshot()

    @staticmethod
    def restore(state: dict[str, Any]) -> None:
        """Put back switches that :meth:`current` returned."""
        _restore(state)

    def to_dict(self) -> dict[str, Any]:
        """``{"tf32", "benchmark", "deterministic"}`` (for ``environment.json``)."""
        return asdict(self)


def _snapshot() -> dict[str, Any]:
    return {
        "matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill_uninitialized_memory": bool(torch.utils.deterministic.fill_uninitialized_memory),  # type: ignore[attr-defined]
    }


def _restore(state: dict[str, Any]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = state["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = state["cudnn_tf32"]
    torch.backends.cudnn.benchmark = state["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = state["cudnn_deterministic"]
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    torch.utils.deterministic.fill_uninitialized_memory = state["fill_uninitialized_memory"]  # type: ignore[attr-defined]


def inference_flags(amp: str, device: torch.device) -> BackendFlags:
    """The switches of whole-volume inference with autocast ``amp`` on ``device``.

    ``amp="none"`` is true float32: no TF32, no benchmark search (the same
    algorithms every time). ``bf16`` is the speed setting: TF32 for what
    autocast leaves in float32, and the benchmark search on CUDA. Deterministic
    algorithms are left as the process has them (a forward pass needs none).
    """
    fast = amp != "none" and device.type == "cuda"
    return BackendFlags(tf32=fast, benchmark=fast, deterministic=None)
