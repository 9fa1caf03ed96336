"""Options and helpers shared by the commands that load a model."""
from __future__ import annotations

import argparse
from collections.abc import Iterable

DEFAULT_MODEL = "imagebind_huge"
DTYPES = ("float32", "bfloat16", "float16")


def _bounded(convert, test, rule: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = _bounded(int, lambda v: v >= 1, ">= 1")
non_negative_int = _bounded(int, lambda v: v >= 0, ">= 0")
positive_float = _bounded(float, lambda v: v > 0, "> 0")
non_negative_float = _bounded(float, lambda v: v >= 0, ">= 0")
port_number = _bounded(int, lambda v: 0 <= v <= 65535, "a port number (0-65535)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, --device, --dtype."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help=f"preset name (default: the checkpoint directory's own config, else {DEFAULT_MODEL})")
    group.add_argument("--checkpoint", help="a .pth file or a model directory; default: $BINDSPACE_CHECKPOINT, "
                       "the cache (~/.cache/bindspace), then a download")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)")
    group.add_argument("--dtype", default="float32", choices=("auto", *DTYPES),
                       help="auto: bfloat16 where the hardware computes it natively (AVX-512 BF16/AMX "
                       "CPUs, Ampere+ GPUs), float16 on older GPUs and MPS, else float32; $BINDSPACE_DTYPE "
                       "overrides auto. An exported ONNX directory runs at its own precision")


def resolve_dtype_arg(args: argparse.Namespace) -> None:
    """Replace --dtype auto with the concrete dtype name for --device; warn (one line) about emulated bfloat16."""
    import sys

    from ..precision import auto_dtype, emulation_warning

    if getattr(args, "dtype", None) not in ("auto", *DTYPES) or not hasattr(args, "device"):
        return
    if args.dtype == "auto":
        args.dtype = auto_dtype(args.device)
    import torch

    message = emulation_warning(getattr(torch, args.dtype), args.device)
    if message:
        print(f"bindspace: warning: {message}", file=sys.stderr)


def load_model(args: argparse.Namespace, modalities: Iterable[str] | None):
    """Load real weights for the requested towers: never random ones."""
    import torch

    from ..model import create_model
    from ..model.checkpoint import is_model_dir

    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        name = args.model or (None if is_model_dir(args.checkpoint) else DEFAULT_MODEL)
        return create_model(name, checkpoint=args.checkpoint, modalities=modalities, device=args.device, dtype=dtype)
    return create_model(args.model or DEFAULT_MODEL, pretrained=True, modalities=modalities, device=args.device, dtype=dtype)
