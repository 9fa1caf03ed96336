"""`bindspace export`: the model's towers as ONNX graphs, for ONNX Runtime, TensorRT, OpenVINO, Triton."""
from __future__ import annotations

import argparse
import sys

from ..modality import ALL_MODALITIES
from .common import DEFAULT_MODEL

EPILOG = """\
The directory holds <tower>.onnx + <tower>.onnx.data (weights; the vision tower is > 2 GB) per
tower and manifest.json (config, input names and shapes, preprocessing version, sha256 of every
file). Every command takes it as --checkpoint and runs it with ONNX Runtime; quantize it to int8
with `bindspace quantize`. Inputs are what the preprocessing produces (see docs/deploy.md).

  bindspace export --format onnx -o imagebind-onnx
  bindspace export --format onnx --checkpoint imagebind_huge.pth --modalities text audio -o onnx-ta
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "export", help="export the towers as ONNX graphs (run them with ONNX Runtime)",
        description="Export each tower to ONNX with a dynamic batch (and text length) and check it "
        "against torch on sample inputs.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="directory to create")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="(default: %(default)s)")
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="preset name (default: the checkpoint directory's own config, "
                       f"else {DEFAULT_MODEL})")
    group.add_argument("--checkpoint", help="a .pth file or a model directory; default: $BINDSPACE_CHECKPOINT, "
                       "the cache (~/.cache/bindspace), then a download")
    parser.add_argument("--modalities", nargs="+", metavar="M", choices=[str(m) for m in ALL_MODALITIES],
                        help="towers to export (default: all the model has)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: 18)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                        help="graph precision (default: %(default)s; float16 is for GPUs; int8: bindspace quantize)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing ONNX Runtime with torch")
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from ..errors import BindspaceError
    from ..export.onnx_export import export_onnx
    from ..index.fingerprint import model_fingerprint
    from ..model import create_model
    from ..model import onnx_manifest as mf
    from ..model.checkpoint import is_model_dir
    from ..model.hub import resolve_pretrained

    opset = mf.DEFAULT_OPSET if args.opset is None else args.opset
    if not mf.MIN_OPSET <= opset <= mf.supported_opset():
        print(f"bindspace export: error: --opset {opset}: choose {mf.MIN_OPSET}-{mf.supported_opset()}",
              file=sys.stderr)
        return 2
    checkpoint = args.checkpoint or str(resolve_pretrained(args.model or DEFAULT_MODEL))
    if mf.is_onnx_dir(checkpoint):
        raise BindspaceError(f"{checkpoint}: is already an exported ONNX directory")
    name = args.model or (None if is_model_dir(checkpoint) else DEFAULT_MODEL)
    model = create_model(name, checkpoint=checkpoint, modalities=args.modalities, dtype=torch.float32)
    fingerprint = model_fingerprint(None, checkpoint)
    out = export_onnx(model, args.output, opset=opset, dtype=args.dtype, check=not args.no_check,
                      fingerprint=fingerprint, log=lambda msg: print(msg, file=sys.stderr))
    print(f"wrote {len(model.modalities)} ONNX towers of {model.config.name} ({args.dtype}, opset {opset}) to {out}")
    return 0
