"""`bindspace demo`: emergent zero-shot on a laptop: digits, keypad tones and text, no downloads."""
from __future__ import annotations

import argparse
import importlib

from .common import add_demo_args


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `demo` sub-command to the parser."""
    parser = sub.add_parser(
        "demo",
        help="watch emergent zero-shot happen in minutes on a CPU (no downloads)",
        description="Stage 1 trains small image and text towers on handwritten digits and their names; stage 2 "
        "freezes them and binds an audio tower (telephone keypad tones) using image<->audio pairs only. "
        "Then tones are matched to text they were never paired with. --out DIR saves a model directory "
        "(plus example PNG/WAV files) that --checkpoint DIR loads in every command.",
    )
    parser.add_argument("--out", metavar="DIR", help="save the trained model directory here")
    parser.add_argument("--steps", metavar="S1[,S2]",
                        help="optimiser steps of stage 1 and stage 2 (default: 400,250; one number sets both)")
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per step (default: 128)")
    add_demo_args(parser, minimum_help="the emergent audio->text accuracy", debug=False)
    # Further demos are sub-commands (`bindspace demo generate --out DIR`); plain `bindspace demo` stays the
    # zero-shot one. Each listed cli module has `register_demo(demos)`, which sets its own handler.
    demos = parser.add_subparsers(dest="demo", metavar="DEMO", title="more demos")
    for module_name in ("generate", "chat", "detect"):
        importlib.import_module(f".{module_name}", __package__).register_demo(demos)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace demo`; returns the exit status."""
    import json

    from ..train.demo import DemoSettings, run_demo
    from .common import UsageError, check_output_dir, demo_log, demo_progress, demo_status, step_counts

    settings = DemoSettings(seed=args.seed, batch_size=args.batch_size, threads=args.threads,
                            progress=demo_progress(args))
    if args.steps:
        settings.stage1_steps, settings.stage2_steps = step_counts(args.steps, "S1,S2 or one number",
                                                                   one_sets_both=True)
    if args.batch_size < 2:
        raise UsageError("--batch-size must be at least 2 (a contrastive batch needs negatives)")
    if args.out:
        check_output_dir(args.out, "model directory")  # before minutes of training

    result = run_demo(args.out, settings, log=demo_log(args))
    if args.json:
        print(json.dumps({
            "audio_to_text": result.audio_to_text, "image_to_text": result.image_to_text,
            "audio_to_image": result.audio_to_image, "chance": 0.1, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "stage_seconds": result.stage_seconds,
            "model_dir": str(result.model_dir) if result.model_dir else None,
            "saved_model_example_accuracy": result.saved_check,
        }, indent=1))
    else:
        print(result.report())
        if result.model_dir:
            print(f"\ntry it:  bindspace classify --checkpoint {result.model_dir} -m audio "
                  f"{result.model_dir}/examples/tone_7.wav --labels-file {result.model_dir}/examples/labels.txt "
                  f"--template 'the digit {{}}'")
    return demo_status(result.audio_to_text, args.min_accuracy, "emergent accuracy")
