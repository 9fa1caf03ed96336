"""Precision chosen for the machine: `dtype="auto"` and the emulated-bfloat16 warning.

bfloat16 only pays where the hardware has bf16 arithmetic: AVX-512 BF16 or AMX on x86
CPUs, CUDA compute capability 8.0+ (Ampere). Elsewhere PyTorch emulates it (on an
AVX2-only CPU ViT-H ran about 12x slower than float32), so `auto` picks float16 on older
CUDA GPUs and Apple MPS, and float32 on every other CPU.
"""
from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable

import torch

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
# Any one of these /proc/cpuinfo flags means the CPU computes bf16 dot products natively.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ENV_DTYPE = "BINDSPACE_DTYPE"  # overrides what "auto" resolves to (e.g. float32 for exact parity)


class PrecisionWarning(UserWarning):
    """A precision that this hardware only emulates (slow) was asked for."""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where it does not exist, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_cpu(flags: Iterable[str] | None = None) -> bool:
    """True when the CPU has bf16 arithmetic (AVX-512 BF16 or AMX)."""
    return bool(NATIVE_BF16_FLAGS & frozenset(cpu_flags() if flags is None else flags))


def choose_dtype(device_type: str, *, flags: Iterable[str] = (), cuda_capability: tuple[int, int] | None = None) -> str:
    """The fastest accurate dtype name for a device kind, from its facts (pure: testable with fake flags)."""
    if device_type == "cuda":
        return "bfloat16" if cuda_capability is not None and cuda_capability >= (8, 0) else "float16"
    if device_type == "mps":
        return "float16"
    if device_type == "cpu" and native_bf16_cpu(flags):
        return "bfloat16"
    return "float32"


def auto_dtype(device: str | torch.device = "cpu") -> str:
    """`choose_dtype` for this machine's device (honours $BINDSPACE_DTYPE)."""
    forced = os.environ.get(ENV_DTYPE, "").strip().lower()
    if forced and forced != "auto":
        if forced not in DTYPE_NAMES:
            raise ValueError(f"${ENV_DTYPE}={forced!r}: choose from {', '.join(DTYPE_NAMES)}")
        return forced
    device = torch.device(device)
    capability = None
    if device.type == "cuda" and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability(device)
    return choose_dtype(device.type, flags=cpu_flags() if device.type == "cpu" else (), cuda_capability=capability)


def emulation_warning(dtype: torch.dtype, device: str | torch.device, flags: Iterable[str] | None = None) -> str | None:
    """A one-line warning when `dtype` is bfloat16 on a CPU without native bf16, else None."""
    if dtype != torch.bfloat16 or torch.device(device).type != "cpu" or native_bf16_cpu(flags):
        return None
    return ("bfloat16 on this CPU is emulated (no AVX-512 BF16 / AMX): expect it to be about 12x slower "
            "than float32; use --dtype auto or float32")


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu",
                  warn: Callable[[str], None] | None = None) -> torch.dtype:
    """A torch dtype from a name, a torch dtype or "auto"; warns about emulated bfloat16."""
    if isinstance(dtype, str):
        name = dtype.strip().lower()
        if name == "auto":
            name = auto_dtype(device)
        if name not in DTYPE_NAMES[1:]:
            raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPE_NAMES)})")
        resolved: torch.dtype = getattr(torch, name)
    else:
        resolved = dtype
    message = emulation_warning(resolved, device)
    if message is not None:
        if warn is None:
            warnings.warn(message, PrecisionWarning, stacklevel=2)
        else:
            warn(message)
    return resolved
