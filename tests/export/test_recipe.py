"""The int8 recipe per CPU kind: a pure function of fake flags, every kind and every branch."""
from __future__ import annotations

import pytest

from bindspace.errors import BindspaceError
from bindspace.model.int8_recipe import Recipe, forced_recipe, kind_mismatch, quantization_recipe
from bindspace.precision import CPU_KINDS, cpu_kind, parse_cpuinfo

SAPPHIRE_RAPIDS = {"sse4_1", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"}
ICE_LAKE = {"sse4_1", "avx2", "avx512f", "avx512_vnni"}
ALDER_LAKE = {"sse4_1", "avx2", "avx_vnni"}  # AVX-VNNI without AVX-512
EPYC_ZEN3 = {"sse2", "sse4_1", "avx", "avx2", "fma"}  # this project's usual machine: no VNNI
OLD_X86 = {"sse2", "ssse3", "sse4_1"}
GRAVITON2 = {"fp", "asimd", "asimddp", "crc32"}
CORTEX_A72 = {"fp", "asimd", "crc32"}

FLAGS = {"amx": SAPPHIRE_RAPIDS, "avx512-vnni": ICE_LAKE, "avx-vnni": ALDER_LAKE, "avx2": EPYC_ZEN3,
         "x86": OLD_X86, "arm-dotprod": GRAVITON2, "arm": CORTEX_A72, "unknown": set()}


@pytest.mark.parametrize("kind", CPU_KINDS)
def test_every_kind_is_recognised_from_its_flags(kind):
    assert cpu_kind(FLAGS[kind]) == kind


def test_cpuinfo_text_of_x86_and_arm_is_parsed():
    x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\nbugs\t\t: sysret_ss_attrs\n"
    arm = "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm asimddp\nCPU implementer\t: 0x41\n"
    assert parse_cpuinfo(x86) == {"fpu", "sse2", "avx2", "fma"}
    assert parse_cpuinfo(arm) == {"fp", "asimd", "evtstrm", "asimddp"}
    assert cpu_kind(parse_cpuinfo(arm)) == "arm-dotprod"
    assert parse_cpuinfo("model name: Apple M2\n") == frozenset()


@pytest.mark.parametrize("kind, weights", [
    ("amx", "int8"), ("avx512-vnni", "int8"), ("avx-vnni", "int8"), ("arm-dotprod", "int8"), ("arm", "int8"),
    ("avx2", "uint8"), ("x86", "uint8"), ("unknown", "uint8"),
])
def test_recipe_per_kind(kind, weights):
    dynamic = quantization_recipe(FLAGS[kind])
    assert (dynamic.cpu_kind, dynamic.weight_type, dynamic.activation_type) == (kind, weights, "uint8")
    assert dynamic.format == "QOperator" and dynamic.per_channel and not dynamic.reduce_range
    assert dynamic.ops == ("MatMul", "Gemm")
    static = quantization_recipe(FLAGS[kind], "static")
    assert static.format == "QDQ" and static.weight_type == weights and "Conv" in static.ops
    assert forced_recipe(kind) == dynamic


@pytest.mark.parametrize("built_for", CPU_KINDS)
@pytest.mark.parametrize("run_on", CPU_KINDS)
def test_a_recipe_saturates_only_where_int8_weights_meet_a_pairwise_int16_kernel(built_for, run_on):
    recipe = forced_recipe(built_for)
    int16_pairs = run_on in ("avx2", "x86", "unknown")  # (v)pmaddubsw, or nothing known: assume it
    assert recipe.saturates_on(run_on) == (recipe.weight_type == "int8" and int16_pairs)
    assert not recipe.saturates_on(built_for)  # never on the kind it was chosen for


def test_reduce_range_int8_weights_never_saturate():
    seven_bit = Recipe("avx512-vnni", weight_type="int8", reduce_range=True)
    assert seven_bit.weight_bits == 7 and not any(seven_bit.saturates_on(k) for k in CPU_KINDS)


def test_mismatch_is_one_line_naming_both_kinds():
    vnni = forced_recipe("avx512-vnni")
    message = kind_mismatch(vnni, flags=EPYC_ZEN3)
    assert message is not None and "\n" not in message
    assert "avx512-vnni" in message and "avx2" in message and "re-quantize" in message
    assert kind_mismatch(vnni, flags=SAPPHIRE_RAPIDS) is None
    assert kind_mismatch(forced_recipe("avx2"), flags=SAPPHIRE_RAPIDS) is None  # u8u8 is exact everywhere


def test_manifest_round_trip_and_old_manifests():
    recipe = forced_recipe("avx2", "static")
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    old = Recipe.from_dict({"mode": "dynamic"})  # written before recipes were recorded: int8 weights
    assert old.weight_type == "int8" and old.saturates_on("avx2") and not old.saturates_on("amx")
    assert forced_recipe("avx2").key() != forced_recipe("amx").key()


def test_bad_mode_and_kind_are_one_line_errors():
    with pytest.raises(BindspaceError, match="unknown quantization mode"):
        quantization_recipe(EPYC_ZEN3, "qat")
    with pytest.raises(BindspaceError, match="unknown CPU kind"):
        forced_recipe("avx9")
