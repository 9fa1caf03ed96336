"""Which int8 quantization suits a CPU kind: a pure function of the CPU flags, recorded in the manifest.

Why the kind matters (measured on an AVX2-only EPYC, onnxruntime 1.32, tiny preset's parity
fixtures, minimum cosine to fp32 per tower; docs/deploy.md has the table): x86 CPUs without
VNNI run ONNX Runtime's uint8 x int8 GEMM with (v)pmaddubsw, which adds pairs of products in
int16 and saturates (255 x 127 x 2 > 32767). Full-range int8 weights then lost up to 6 % of
cosine (thermal 0.940). uint8 weights (the u8u8 kernel widens to int16 before multiplying) or
7-bit weights (reduce_range) do not saturate; u8u8 kept more accuracy (>= 0.9995 vs >= 0.9986)
at the same speed there. VNNI/AMX accumulate u8 x s8 in int32 and run int8 weights fastest;
ARM kernels widen (umull) or use sdot/udot, so int8 weights do not saturate there either.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import BindspaceError
from ..precision import CPU_KINDS, cpu_flags, cpu_kind

MODES = ("dynamic", "static")
# The ops carrying nearly all the FLOPs of a ViT; LayerNorm/Softmax stay float.
DYNAMIC_OPS = ("MatMul", "Gemm")
STATIC_OPS = ("MatMul", "Gemm", "Conv")
# Kinds whose uint8 x int8 kernel sums products pairwise in int16 (pmaddubsw / vpmaddubsw).
SATURATING_KINDS = frozenset({"avx2", "x86"})
# int32-accumulating u8 x s8 kernels: there int8 weights are both exact and the fastest.
INT8_WEIGHT_KINDS = frozenset({"amx", "avx512-vnni", "avx-vnni", "arm-dotprod", "arm"})


class KindWarning(UserWarning):
    """An int8 directory runs on a CPU kind whose kernels lose accuracy with its recipe."""


@dataclass(frozen=True)
class Recipe:
    """How towers are quantized; saved as `quantization.recipe` in an int8 manifest."""

    cpu_kind: str  # the CPU kind it was chosen for (one of precision.CPU_KINDS)
    mode: str = "dynamic"  # dynamic: activations quantized per batch at run time; static: calibrated
    weight_type: str = "int8"  # "int8" or "uint8"
    activation_type: str = "uint8"
    reduce_range: bool = False  # 7-bit weights
    format: str = "QOperator"  # QOperator (dynamic) or QDQ (static)
    per_channel: bool = True  # one weight scale per output channel
    ops: tuple[str, ...] = field(default=DYNAMIC_OPS)

    @property
    def weight_bits(self) -> int:
        """Bits of weight precision actually used."""
        return 7 if self.reduce_range else 8

    def saturates_on(self, kind: str) -> bool:
        """True when `kind`'s int8 GEMM kernel can overflow its int16 sums with this recipe's weights."""
        risky = self.weight_type == "int8" and not self.reduce_range and self.activation_type == "uint8"
        return risky and kind not in INT8_WEIGHT_KINDS  # unknown kinds: assume the worst

    def key(self) -> str:
        """A short stable text naming the recipe (part of cache keys)."""
        rr = "-rr" if self.reduce_range else ""
        pc = "-pc" if self.per_channel else ""
        return f"{self.mode}-{self.format}-w{self.weight_type}-a{self.activation_type}{rr}{pc}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = asdict(self)
        out["ops"] = list(self.ops)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Read a manifest's recipe; a manifest from before recipes were recorded gets the old fixed one."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known.setdefault("cpu_kind", "unknown")
        if "ops" in known:
            known["ops"] = tuple(known["ops"])
        return cls(**known)


def quantization_recipe(flags: Iterable[str], mode: str = "dynamic") -> Recipe:
    """The accurate (and, among accurate ones, fastest) int8 recipe for a CPU with these flags; pure."""
    if mode not in MODES:
        raise BindspaceError(f"unknown quantization mode {mode!r} (choose from {', '.join(MODES)})")
    kind = cpu_kind(flags)
    weights = "int8" if kind in INT8_WEIGHT_KINDS else "uint8"  # u8u8 never saturates: the safe default
    if mode == "dynamic":
        return Recipe(kind, mode, weights, "uint8", False, "QOperator", True, DYNAMIC_OPS)
    return Recipe(kind, mode, weights, "uint8", False, "QDQ", True, STATIC_OPS)


def forced_recipe(kind: str, mode: str = "dynamic") -> Recipe:
    """The recipe `quantization_recipe` picks for a named CPU kind (to build for another machine)."""
    if kind not in CPU_KINDS:
        raise BindspaceError(f"unknown CPU kind {kind!r} (choose from {', '.join(CPU_KINDS)})")
    flags = {"amx": {"amx_int8"}, "avx512-vnni": {"avx512_vnni"}, "avx-vnni": {"avx_vnni"}, "avx2": {"avx2"},
             "x86": {"sse4_1"}, "arm-dotprod": {"asimddp"}, "arm": {"asimd"}, "unknown": set()}[kind]
    return quantization_recipe(flags, mode)


def kind_mismatch(recipe: Recipe, flags: Iterable[str] | None = None) -> str | None:
    """A one-line warning when this CPU's kernels lose accuracy with `recipe`, else None."""
    here = cpu_kind(cpu_flags() if flags is None else flags)
    if not recipe.saturates_on(here):
        return None
    return (f"int8 towers built for {recipe.cpu_kind} CPUs (int8 weights) lose accuracy on this {here} CPU "
            "(its int8 kernel saturates); re-quantize here: bindspace quantize, or --dtype int8")
