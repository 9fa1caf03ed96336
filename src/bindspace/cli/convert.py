"""`bindspace convert`: the released .pth -> per-modality safetensors + manifest."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `convert` sub-command to the parser."""
    parser = sub.add_parser(
        "convert",
        help="split a checkpoint into per-modality safetensors files",
        description="Write one safetensors file per modality plus manifest.json (config, sha256 of every file). "
        "Single-modality jobs then read only their own tower.",
    )
    parser.add_argument("checkpoint", help="imagebind_huge.pth (or another checkpoint)")
    parser.add_argument("out_dir", help="output directory")
    parser.add_argument("--model", default="imagebind_huge",
                        help="preset the checkpoint belongs to (default: %(default)s)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace convert`; returns the exit status."""
    from ..model import checkpoint as ckpt
    from ..model.imagebind import ImageBindModel
    from ..model.meta import meta_device
    from ..model.presets import get_config

    config = get_config(args.model)
    with meta_device():
        expected = {k: tuple(v.shape) for k, v in ImageBindModel(config).state_dict().items()}
    state = ckpt.load_state_dict(args.checkpoint)
    ckpt.check_keys(expected, state, args.checkpoint)
    out = ckpt.save_model_dir(state, config, args.out_dir, extra={"source": str(args.checkpoint)})
    print(f"wrote {len(state)} tensors for {config.name} to {out}")
    return 0
