"""Which device to train on and what `precision_dtype=float16` means there.

- CUDA: float16 autocast with gradient scaling.
- CPU with native bf16 (AVX512-BF16 or AMX): bfloat16 autocast (no scaling needed).
- CPU without it: float32, with a one-line notice; emulated bf16 was measured ~10x slower than
  float32 on an AVX2-only CPU, so it is never used there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

__all__ = [
    "Precision",
    "cpu_capability",
    "cpu_has_native_bf16",
    "resolve_device",
    "resolve_precision",
]

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_capability() -> str:
    """torch's CPU kernel level (e.g. `AVX512`) plus the bf16 flags found, for logs/benchmarks."""
    flags = sorted(f for f in _BF16_FLAGS if f in cpu_flags())
    return torch.backends.cpu.get_cpu_capability() + (f" ({', '.join(flags)})" if flags else "")


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 autocast pays off."""
    if any(flag in cpu_flags() for flag in _BF16_FLAGS):
        return True
    return "AMX" in torch.backends.cpu.get_cpu_capability()


@dataclass(frozen=True)
class Precision:
    """How to run the forward pass: autocast dtype (None = float32) and whether to scale grads."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    grad_scaling: bool
    notice: str | None = None

    @property
    def name(self) -> str:
        """`float32`, `float16` or `bfloat16`: what actually runs."""
        return "float32" if self.autocast_dtype is None else str(self.autocast_dtype).split(".")[1]

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The autocast context for forward passes (a no-op for float32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for float16 on CUDA."""
        return torch.amp.GradScaler(self.device.type, enabled=self.grad_scaling)


def resolve_precision(precision_dtype: str, device: torch.device) -> Precision:
    """What `precision_dtype` becomes on `device` (see the module docstring)."""
    if precision_dtype == "float32":
        return Precision(device, None, False)
    if device.type == "cuda":
        return Precision(device, torch.float16, True)
    if device.type == "cpu" and cpu_has_native_bf16():
        return Precision(device, torch.bfloat16, False)
    return Precision(
        device,
        None,
        False,
        notice=(
            f"precision_dtype=float16: this {device.type} has no native half precision "
            f"(capability {cpu_capability() if device.type == 'cpu' else device.type}); "
            "training in float32"
        ),
    )
