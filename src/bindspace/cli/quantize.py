"""`bindspace quantize`: int8 copies of exported towers, with a report of the accuracy kept."""
from __future__ import annotations

import argparse
import json
import sys

from ..modality import ALL_MODALITIES

EPILOG = """\
dynamic (default) needs no data. static also fixes activation ranges from calibration inputs:
give media with --calibrate KIND:PATH (a file or a folder; text: a .txt file, one text a line),
or --synthetic for a smoke run on random inputs (not meaningful ranges). The report compares
each int8 tower with the fp32 one on the same inputs: cosine, and zero-shot agreement (top label
among fixed prompts) where the directory has the text tower.

  bindspace quantize imagebind-onnx -o imagebind-int8
  bindspace quantize imagebind-onnx -o int8-static --mode static --calibrate audio:clips/ \\
      --calibrate image:photos/ --calibrate text:prompts.txt --modalities vision audio text
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "quantize", help="int8-quantize an exported ONNX directory", epilog=EPILOG,
        description="Quantize the towers of a `bindspace export` directory to int8 with ONNX Runtime.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="ONNX_DIR", help="an fp32 directory written by bindspace export")
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="directory to create")
    parser.add_argument("--mode", default="dynamic", choices=["dynamic", "static"], help="(default: %(default)s)")
    parser.add_argument("--modalities", nargs="+", metavar="M", choices=[str(m) for m in ALL_MODALITIES],
                        help="towers to quantize (default: all in ONNX_DIR)")
    parser.add_argument("--calibrate", action="append", default=[], metavar="KIND:PATH",
                        help="calibration/report media, repeatable (kinds: text image video audio depth thermal imu)")
    parser.add_argument("--synthetic", action="store_true", help="static without media: random inputs (smoke run)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..export.calibration import load_calibration
    from ..export.quantize import quantize_dir
    from ..model.onnx_backend import OnnxModel

    inputs = load_calibration(args.calibrate, OnnxModel(args.source)) if args.calibrate else None
    report = quantize_dir(args.source, args.output, mode=args.mode, modalities=args.modalities, inputs=inputs,
                          synthetic=args.synthetic)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{'tower':<8} {'items':>5} {'min cos':>8} {'mean cos':>8} {'zero-shot agree':>15}")
        for tower, row in report.items():
            agree = row.get("zero_shot_agreement")
            print(f"{tower:<8} {row['items']:>5} {row['min_cosine']:>8.5f} {row['mean_cosine']:>8.5f} "
                  f"{'-' if agree is None else f'{agree:.3f}':>15}")
    print(f"bindspace quantize: wrote int8-{args.mode} towers to {args.output}", file=sys.stderr)
    return 0
