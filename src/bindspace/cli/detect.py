"""`bindspace detect`: boxes for any classes of the shared space (texts, sounds, images ...) in images."""
from __future__ import annotations

import argparse
import os
from typing import Any

from .common import add_demo_args, add_model_args, non_negative_float, positive_int
from .query import add_query_options

# `demo detect`'s defaults, as DetectDemoSettings has them (not imported here: --help must not load torch).
DEMO_STEPS = 250
DEMO_THREADS = 2


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `detect` sub-command to the parser."""
    parser = sub.add_parser(
        "detect",
        help="find and name objects in images; classes are texts, sounds, images ... of the shared space",
        description="Each --text/--audio/--image/... part is one class, embedded by the model the detector was "
        "trained with (or --checkpoint), so a detector trained with text classes accepts a keypad tone or a "
        "bark as a class unchanged. Prints JSON: the boxes per image in its own pixels, best first.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to search")
    parser.add_argument("--detector", required=True, metavar="DIR",
                        help="a detector directory (from `bindspace demo detect` or training)")
    add_query_options(parser)
    parser.add_argument("--name", action="append", default=None, metavar="LABEL",
                        help="the i-th class's label in the output (repeatable; default: the text, or the file's "
                        "name)")
    parser.add_argument("--threshold", type=non_negative_float, default=0.3,
                        help="lowest score kept (default: %(default)s)")
    parser.add_argument("--iou", type=non_negative_float, default=0.5,
                        help="boxes of one class overlapping more than this are merged (default: %(default)s)")
    parser.add_argument("--max-detections", type=positive_int, default=100,
                        help="most boxes per image (default: %(default)s)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the JSON here instead of printing it")
    parser.add_argument("--draw", metavar="PATH",
                        help="also draw the boxes: a PNG file for one image, a folder (created, one level) for "
                        "several")
    add_model_args(parser)
    parser.set_defaults(checkpoint=None)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace detect`; returns the exit status."""
    import json
    import sys
    from pathlib import Path

    from ..detect import DetectionClass, class_embeddings, load_detector
    from ..fsio import atomic_write
    from ..kinds import tower_of
    from .common import UsageError, check_input_file, check_output_dir, check_writable_file, load_model, write_failed

    parts: list[tuple[str, str]] = args.parts or []
    if not parts:
        raise UsageError("give at least one class: --text TEXT and/or --audio/--image/--video/--depth/--thermal/--imu "
                         "FILE")
    names = list(args.name or [])
    if len(names) > len(parts):
        raise UsageError(f"{len(names)} --name values for {len(parts)} classes")
    if args.weight:
        raise UsageError("--weight does not apply to detect: each query part is its own class")
    names += [value if kind == "text" else Path(value).stem for kind, value in parts[len(names):]]
    for image in args.images:
        check_input_file(image, "IMAGE")
    for kind, value in parts:
        if kind != "text":
            check_input_file(value, f"--{kind}")
    if args.output:
        check_writable_file(args.output, "JSON output")
    if args.draw:
        if len(args.images) == 1:
            check_writable_file(args.draw, "drawing")
        else:
            check_output_dir(args.draw, "drawings folder")

    detector = load_detector(args.detector)
    if args.checkpoint is None:
        recorded = detector.space.checkpoint
        if recorded is None:
            raise UsageError(f"{args.detector} does not record its model: pass --checkpoint")
        args.checkpoint = str((Path(args.detector) / recorded) if not os.path.isabs(recorded) else recorded)
        if args.model is None:  # a .pth encoder: the preset it was trained with (a model directory names its own)
            args.model = detector.space.extra.get("model")
    model = load_model(args, sorted({tower_of(kind).value for kind, _ in parts}))
    classes = class_embeddings(model, [DetectionClass(n, ((k, v),)) for n, (k, v) in zip(names, parts)])
    found = detector.detect(args.images, classes, names, threshold=args.threshold, iou=args.iou,
                            max_detections=args.max_detections, names=args.images)
    result = [{"image": image, "detections": [d.to_dict() for d in dets]} for image, dets in zip(args.images, found)]
    text = json.dumps(result, indent=1) + "\n"
    if args.output:
        try:
            atomic_write(args.output, text)
        except OSError as exc:
            raise write_failed(args.output, exc) from None
    else:
        sys.stdout.write(text)
    if args.draw:
        _draw(args, found)
    return 0


def _draw(args: argparse.Namespace, found: list[Any]) -> None:
    from pathlib import Path

    from ..detect.draw import draw_detections
    from ..fsio import atomic_write
    from ..preprocess.image import to_pil
    from .common import write_failed

    if len(args.images) == 1:
        targets = [Path(args.draw)]
    else:
        folder = Path(args.draw)
        folder.mkdir(exist_ok=True)
        targets = [folder / f"{i:03d}_{Path(image).stem}.png" for i, image in enumerate(args.images)]
    for image, dets, target in zip(args.images, found, targets):
        picture = draw_detections(to_pil(image), dets)

        def save(path: Path, pic: Any = picture) -> None:
            pic.save(path, format="PNG")

        try:
            atomic_write(target, save)
        except OSError as exc:
            raise write_failed(target, exc) from None


def register_demo(demos: argparse._SubParsersAction) -> None:
    """Add `bindspace demo detect` (called by the demo command)."""
    parser = demos.add_parser(
        "detect",
        help="audio-queried detection: a detector trained with text classes finds digits named by keypad tones",
        description="Trains (or loads, --checkpoint) the demo model, then a detector on scenes of 2-4 handwritten "
        "digits with TEXT classes only, and asks it for keypad TONES it never saw. Reports box recall (IoU >= "
        "0.5) for text- and tone-queried digits and draws a contact sheet. The folder holds model/, detector/, "
        "examples/ (scenes and tones for `bindspace detect`), contact_sheet.png and report.json.",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="the demo's folder (created, one level)")
    parser.add_argument("--checkpoint", metavar="DIR",
                        help="a demo model directory to reuse (from `bindspace demo --out DIR`); default: train one")
    parser.add_argument("--steps", type=positive_int, default=DEMO_STEPS,
                        help="detector training steps (default: %(default)s)")
    add_demo_args(parser, threads=DEMO_THREADS, minimum="--min-ratio",
                  minimum_help="tone-queried recall / text-queried recall")
    parser.set_defaults(handler=run_demo_detect)


def run_demo_detect(args: argparse.Namespace) -> int:
    """Run `bindspace demo detect`; returns the exit status."""
    import json
    from pathlib import Path

    from ..detect.demo import DetectDemoSettings, run_detect_demo
    from .common import check_input_file, check_output_dir, demo_log, demo_progress, demo_status

    check_output_dir(args.out, "demo folder")  # before minutes of training
    if args.checkpoint is not None and not Path(args.checkpoint).is_dir():
        check_input_file(args.checkpoint, "--checkpoint")
    Path(args.out).mkdir(exist_ok=True)
    settings = DetectDemoSettings(steps=args.steps, seed=args.seed, threads=args.threads,
                                  progress=demo_progress(args))
    result = run_detect_demo(args.out, settings, checkpoint=args.checkpoint, log=demo_log(args))
    if args.json:
        print(json.dumps(json.loads((Path(args.out) / "report.json").read_text()), indent=1))
    else:
        print(result.report())
        example = json.loads((Path(args.out) / "examples" / "scene_0.json").read_text())
        digit = (example["found_by_tone"] or example["labels"])[0]  # a digit the scene holds (and a tone found)
        print(f"\ntry it:  bindspace detect --detector {args.out}/detector "
              f"--audio {args.out}/examples/tone_{digit}.wav {args.out}/examples/scene_0.png --draw boxes.png")
    return demo_status(result.ratio, args.min_ratio, "tone/text recall ratio", "--min-ratio", ".2f")
