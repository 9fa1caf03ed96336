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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a function needs it: the CLI resolves "auto" on a CPU without it
    import torch

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
# Any one of these /proc/cpuinfo flags means the CPU computes bf16 dot products natively.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ENV_DTYPE = "BINDSPACE_DTYPE"  # overrides what "auto" resolves to (e.g. float32 for exact parity)


class PrecisionWarning(UserWarning):
    """A precision that this hardware only emulates (slow) was asked for."""


CPUINFO = "/proc/cpuinfo"
# CPU kinds, by what their int8 dot-product kernels do (see `cpu_kind`).
CPU_KINDS = ("amx", "avx512-vnni", "avx-vnni", "avx2", "x86", "arm-dotprod", "arm", "unknown")


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The feature flags of the first processor in /proc/cpuinfo text ("flags" on x86, "Features" on ARM)."""
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (empty where /proc/cpuinfo does not exist, e.g. macOS)."""
    try:
        with open(CPUINFO) as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return frozenset()


def cpu_kind(flags: Iterable[str]) -> str:
    """The CPU kind (one of CPU_KINDS) that decides which int8 kernels ONNX Runtime runs; pure.

    x86 without VNNI multiplies uint8 by int8 with (v)pmaddubsw, whose int16 pair sums
    saturate; VNNI (vpdpbusd) and AMX accumulate in int32; ARM widens (umull/sdot/udot).
    """
    have = frozenset(flags)
    if "amx_int8" in have:
        return "amx"
    if "avx512_vnni" in have:
        return "avx512-vnni"
    if "avx_vnni" in have:
        return "avx-vnni"
    if "avx2" in have:
        return "avx2"
    if have & {"sse4_1", "sse2", "ssse3"}:
        return "x86"
    if "asimddp" in have:
        return "arm-dotprod"
    if "asimd" in have or "neon" in have:
        return "arm"
    return "unknown"


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
    kind = device_type(device)
    capability = None
    if kind == "cuda":
        import torch

        if torch.cuda.is_available():
            capability = torch.cuda.get_device_capability(torch.device(device))
    return choose_dtype(kind, flags=cpu_flags() if kind == "cpu" else (), cuda_capability=capability)


def device_type(device: str | torch.device) -> str:
    """"cpu", "cuda", "mps", ... of a device or device name (the plain "cpu" is read without importing torch)."""
    if isinstance(device, str) and device.strip() == "cpu":
        return "cpu"
    import torch

    return torch.device(device).type


def emulation_warning(dtype: torch.dtype | str, device: str | torch.device,
                      flags: Iterable[str] | None = None) -> str | None:
    """A one-line warning when `dtype` (a torch dtype or its name) is bfloat16 on a CPU without native bf16."""
    if str(dtype).removeprefix("torch.") != "bfloat16" or device_type(device) != "cpu" or native_bf16_cpu(flags):
        return None
    return ("bfloat16 on this CPU is emulated (no AVX-512 BF16 / AMX): expect it to be about 12x slower "
            "than float32; use --dtype auto or float32")


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu",
                  warn: Callable[[str], None] | None = None) -> torch.dtype:
    """A torch dtype from a name, a torch dtype or "auto"; warns about emulated bfloat16."""
    import torch

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
