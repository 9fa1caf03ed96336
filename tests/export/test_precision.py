"""dtype="auto": the decision per device and CPU flags, and the emulated-bfloat16 warning."""
from __future__ import annotations

import pytest
import torch

from bindspace.precision import (
    PrecisionWarning,
    auto_dtype,
    choose_dtype,
    emulation_warning,
    native_bf16_cpu,
    resolve_dtype,
)

SAPPHIRE_RAPIDS = {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}
COOPER_LAKE = {"avx2", "avx512f", "avx512_bf16"}  # AVX-512 BF16 without AMX
EPYC_ZEN2 = {"fpu", "sse2", "avx", "avx2", "fma"}  # AVX2 only: bf16 is emulated there
ICE_LAKE = {"avx2", "avx512f", "avx512_vnni"}  # VNNI (int8) but no bf16


@pytest.mark.parametrize("flags, expected", [
    (SAPPHIRE_RAPIDS, "bfloat16"), (COOPER_LAKE, "bfloat16"), ({"amx_bf16"}, "bfloat16"),
    (EPYC_ZEN2, "float32"), (ICE_LAKE, "float32"), (set(), "float32"),
])
def test_cpu_picks_bf16_only_with_native_support(flags, expected):
    assert choose_dtype("cpu", flags=flags) == expected


@pytest.mark.parametrize("capability, expected", [((8, 0), "bfloat16"), ((9, 0), "bfloat16"), ((7, 5), "float16"),
                                                   ((6, 1), "float16"), (None, "float16")])
def test_cuda_ampere_and_newer_get_bf16_older_fp16(capability, expected):
    assert choose_dtype("cuda", cuda_capability=capability) == expected


def test_mps_gets_fp16_and_unknown_devices_fp32():
    assert choose_dtype("mps") == "float16"
    assert choose_dtype("xpu", flags=SAPPHIRE_RAPIDS) == "float32"


def test_bf16_on_a_cpu_without_it_warns_in_one_line():
    message = emulation_warning(torch.bfloat16, "cpu", flags=EPYC_ZEN2)
    assert message is not None and "\n" not in message and "12x slower" in message
    assert emulation_warning(torch.bfloat16, "cpu", flags=SAPPHIRE_RAPIDS) is None
    assert emulation_warning(torch.float32, "cpu", flags=EPYC_ZEN2) is None
    assert emulation_warning(torch.bfloat16, "cuda", flags=EPYC_ZEN2) is None
    # The CLI passes the dtype's name: the same verdicts.
    assert emulation_warning("bfloat16", "cpu", flags=EPYC_ZEN2) == message
    assert emulation_warning("bfloat16", "cpu", flags=SAPPHIRE_RAPIDS) is None
    assert emulation_warning("float32", "cpu", flags=EPYC_ZEN2) is None


def test_resolve_dtype_warns_through_the_given_channel(monkeypatch):
    import bindspace.precision as precision

    monkeypatch.delenv("BINDSPACE_DTYPE", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(EPYC_ZEN2))
    said: list[str] = []
    assert resolve_dtype("bfloat16", "cpu", warn=said.append) == torch.bfloat16
    assert len(said) == 1
    with pytest.warns(PrecisionWarning):
        resolve_dtype(torch.bfloat16, "cpu")
    assert resolve_dtype("auto", "cpu") == torch.float32  # no native bf16: auto stays fp32
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    assert resolve_dtype("auto", "cpu", warn=said.append) == torch.bfloat16 and len(said) == 1
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")


def test_env_overrides_auto(monkeypatch):
    monkeypatch.setenv("BINDSPACE_DTYPE", "float32")
    assert auto_dtype("cpu") == "float32"
    monkeypatch.setenv("BINDSPACE_DTYPE", "fp8")
    with pytest.raises(ValueError, match="BINDSPACE_DTYPE"):
        auto_dtype("cpu")


@pytest.mark.parametrize("flags_line, native", [
    ("flags\t\t: fpu sse2 avx2 fma avx512_bf16", True), ("flags\t\t: fpu avx2 amx_tile amx_bf16", True),
    ("flags\t\t: fpu sse2 avx avx2 fma", False), ("Features\t: fp asimd asimddp", False),
])
def test_cpu_flags_come_from_the_cpuinfo_file(tmp_path, monkeypatch, flags_line, native):
    import bindspace.precision as precision

    fake = tmp_path / "cpuinfo"
    fake.write_text(f"processor\t: 0\nmodel name\t: Fake CPU\n{flags_line}\nbogomips\t: 4000\n")
    monkeypatch.setattr(precision, "CPUINFO", str(fake))
    precision.cpu_flags.cache_clear()
    try:
        assert native_bf16_cpu(precision.cpu_flags()) is native
        assert (precision.choose_dtype("cpu", flags=precision.cpu_flags()) == "bfloat16") is native
        monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "absent"))  # macOS: no /proc/cpuinfo
        precision.cpu_flags.cache_clear()
        assert precision.cpu_flags() == frozenset() and precision.choose_dtype("cpu") == "float32"
    finally:
        precision.cpu_flags.cache_clear()


def test_cli_resolves_auto_and_warns_once(monkeypatch, capsys):
    import argparse

    import bindspace.precision as precision
    from bindspace.cli.common import resolve_dtype_arg

    monkeypatch.delenv("BINDSPACE_DTYPE", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(EPYC_ZEN2))
    args = argparse.Namespace(dtype="auto", device="cpu")
    resolve_dtype_arg(args)
    assert args.dtype == "float32" and capsys.readouterr().err == ""
    args = argparse.Namespace(dtype="bfloat16", device="cpu")
    resolve_dtype_arg(args)
    err = capsys.readouterr().err
    assert args.dtype == "bfloat16" and err.count("\n") == 1 and "warning" in err and "emulated" in err


def test_create_model_accepts_auto(monkeypatch):
    import bindspace

    monkeypatch.setenv("BINDSPACE_DTYPE", "bfloat16")  # what auto resolves to, whatever this CPU is
    model = bindspace.create_model("imagebind_tiny_test", modalities=["imu"], dtype="auto")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("command", ["embed", "classify", "index", "search", "serve"])
def test_commands_default_to_auto(command, monkeypatch):
    import bindspace.precision as precision
    from bindspace.cli import build_parser
    from bindspace.cli.common import resolve_dtype_arg

    argv = {"embed": ["embed", "--modality", "text", "x", "-o", "out.npy"],
            "classify": ["classify", "--modality", "audio", "x.wav", "--labels", "a,b"],
            "index": ["index", "lib", "--db", "db"], "search": ["search", "--db", "db", "x"],
            "serve": ["serve"]}[command]
    args = build_parser().parse_args(argv)
    assert args.dtype == "auto"
    monkeypatch.delenv("BINDSPACE_DTYPE", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(SAPPHIRE_RAPIDS))
    resolve_dtype_arg(args)
    assert args.dtype == "bfloat16"  # a native-bf16 CPU runs bfloat16 unless told otherwise
