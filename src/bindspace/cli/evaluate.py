"""`bindspace eval`: the paper's zero-shot benchmarks on a local copy of each dataset."""
from __future__ import annotations

import argparse
import sys

from .common import add_model_args, add_workers_arg, positive_int, workers

BENCHMARK_NAMES = ("esc50", "clotho", "audiocaps", "nyud", "sund", "llvip", "imagenet")


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `eval` sub-command to the parser."""
    parser = sub.add_parser(
        "eval",
        help="run a zero-shot benchmark (ESC-50, Clotho, AudioCaps, NYU-D, SUN-D, LLVIP, ImageNet)",
        description="Evaluate on a dataset in its published on-disk layout and print our number next "
        "to the ImageBind paper's. The layout each benchmark reads is documented in "
        "bindspace.tasks.eval.<benchmark>. Unreadable items are skipped and counted in the report; a "
        "missing layout is a one-line error. Nothing is downloaded.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="layouts:\n" + "\n".join(f"  {name:<10} {layout}" for name, layout in _layouts()),
    )
    parser.add_argument("benchmark", choices=BENCHMARK_NAMES, help="which benchmark")
    parser.add_argument("--root", required=True, help="the dataset folder")
    parser.add_argument("--limit", type=positive_int, help="evaluate only N items, evenly spaced over the dataset "
                        "(clips, depth maps, images; LLVIP: infrared images)")
    parser.add_argument("--template", action="append", dest="templates", metavar="TEXT",
                        help="prompt template with {} for the class name (repeatable; replaces the defaults; "
                        "classification benchmarks only)")
    parser.add_argument("--split", help="nyud: split folder (default test); sund: a file listing the sample "
                        "folders to use (default: all)")
    parser.add_argument("--class-names", help="imagenet: a file mapping class folders to prompt names")
    parser.add_argument("--seed", type=int, default=0, help="llvip: seed of the background crops (default: 0)")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    parser.add_argument("--report", help="where to write the JSON report (default: eval_<benchmark>.json)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="items per forward pass (default: 32)")
    add_workers_arg(parser)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")
    add_model_args(parser)
    return parser


def _layouts() -> list[tuple[str, str]]:
    # Kept here, not imported, so that `bindspace --help` does not import the harness.
    return [
        ("esc50", "ROOT/meta/esc50.csv, ROOT/audio/*.wav"),
        ("clotho", "ROOT/clotho_captions_evaluation.csv, ROOT/evaluation/*.wav"),
        ("audiocaps", "ROOT/test.csv, ROOT/test/<youtube_id>_<start_time>.wav or <youtube_id>.wav"),
        ("nyud", "ROOT/<split>/depth/*.png (16-bit mm), ROOT/<split>/scenes.csv (file,scene)"),
        ("sund", "ROOT/**/<sample>/depth/*.png, <sample>/scene.txt"),
        ("llvip", "ROOT/infrared/test/*.jpg, ROOT/Annotations/*.xml"),
        ("imagenet", "ROOT/<class folder>/*.JPEG [+ classnames.txt]"),
    ]


def run(args: argparse.Namespace) -> int:
    """Run `bindspace eval`; returns the exit status."""
    from pathlib import Path

    from ..errors import BindspaceError
    from ..tasks.eval import EvalOptions, format_report, get_benchmark, report_json, write_report
    from ..tasks.eval import run as run_benchmark
    from .classify import user_templates
    from .common import check_writable_file, load_model, write_failed

    bench = get_benchmark(args.benchmark)
    templates = user_templates(args.templates)
    if templates and bench.task != "classification":
        print(f"bindspace eval: note: --template does not apply to {bench.name} (captions are the queries)",
              file=sys.stderr)
        templates = None
    options = EvalOptions(limit=args.limit, split=args.split, class_names=args.class_names, seed=args.seed)
    root = Path(args.root)
    data = bench.load(root, options)  # layout problems surface before the model is loaded
    report_path = args.report or f"eval_{bench.name}.json"
    check_writable_file(report_path, "report")  # before the model load and the embedding work
    tower = "vision" if bench.kind in ("image", "video") else bench.kind
    model = load_model(args, ["text", tower])
    from ..embedding import Embedder

    embedder = Embedder(model, batch_size=args.batch_size, num_workers=workers(args), progress=False)
    report = run_benchmark(bench, root, embedder, options=options, templates=templates, progress=args.progress,
                           data=data)
    report.model = {"name": model.config.name, "checkpoint": args.checkpoint, "device": args.device,
                    "dtype": args.dtype}
    try:
        path = write_report(report, report_path)
    except OSError as exc:  # e.g. a full disk: the numbers are still printed below
        print(f"bindspace eval: error: {write_failed(report_path, exc)}", file=sys.stderr)
        path = None
    if args.json:
        print(report_json(report))
    else:
        print(format_report(report))
        if path is not None:
            print(f"report: {path}")
    if report.counts.get("evaluated", 0) == 0 or not report.metrics:
        first = f" (first: {report.skipped[0].name}: {report.skipped[0].reason})" if report.skipped else ""
        raise BindspaceError(f"{bench.name}: nothing could be evaluated, {len(report.skipped)} items skipped{first}")
    return 0 if path is not None else 1

