"""`bindspace generate`: draw images from any query (text, sound, images...) with an embedding-conditioned generator."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import (
    DTYPES,
    UsageError,
    add_demo_args,
    add_model_args,
    check_output_dir,
    check_writable_file,
    demo_log,
    demo_progress,
    demo_status,
    non_negative_int,
    positive_float,
    positive_int,
    write_failed,
)
from .query import add_query_options, add_text_parts, query_parts

EPILOG = """\
query parts:
  every TEXT argument and every --text/--image/--audio/--video/--depth/--thermal/--imu option is
  one part; several parts are combined as in `bindspace search` (weighted sum of unit vectors,
  renormalised; the i-th --weight applies to the i-th part, negative subtracts).

pipelines:
  a diffusers Stable unCLIP image-variation pipeline saved locally (StableUnCLIPImg2ImgPipeline,
  e.g. stabilityai/stable-diffusion-2-1-unclip with save_pretrained), conditioned on the query
  through image_embeds; or the generator `bindspace demo generate --out DIR` writes to DIR/generator.
  Nothing is downloaded. See docs/generate.md.

examples:
  bindspace generate --pipeline demo/generator --audio demo/examples/tone_7.wav -o seven.png
  bindspace generate --pipeline sd21-unclip-h --audio rain.wav "a city street" --weight 1 --weight 0.5 -o rainy.png
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "generate", help="generate images from text, sound or any other query (unCLIP or the demo generator)",
        description="Embed a query (one or several weighted parts) and condition an image generator on it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_text_parts(parser)
    parser.add_argument("--pipeline", required=True, metavar="DIR", help="the generator directory")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.png",
                        help="output PNG (with --num-images N > 1: OUT-1.png ... OUT-N.png)")
    add_query_options(parser)
    group = parser.add_argument_group("sampling")
    group.add_argument("--seed", type=int, metavar="N", default=0, help="random seed (default: %(default)s)")
    group.add_argument("--steps", type=positive_int, metavar="N", help="denoising steps (default: the generator's)")
    group.add_argument("--guidance", type=positive_float, metavar="G",
                       help="classifier-free guidance scale (default: the generator's)")
    group.add_argument("--noise-level", type=non_negative_int, metavar="0-999", default=0,
                       help="noise added to the embedding, 0-999: more gives freer variations (default: 0)")
    group.add_argument("--prompt", metavar="TEXT",
                       help="a text prompt for the generator's own text encoder (unCLIP only)")
    group.add_argument("--negative-prompt", metavar="TEXT", help="what to steer away from (unCLIP only)")
    group.add_argument("--num-images", type=positive_int, metavar="N", default=1, help="images to draw (default: 1)")
    group.add_argument("--height", type=positive_int, metavar="PX",
                       help="image height in pixels (default: the generator's)")
    group.add_argument("--width", type=positive_int, metavar="PX",
                       help="image width in pixels (default: the generator's)")
    group.add_argument("--embed-norm", type=positive_float, metavar="X",
                       help="length to scale the unit query to for unCLIP (default: measured; see docs/generate.md)")
    group.add_argument("--pipeline-dtype", choices=DTYPES,
                       help="dtype of the generator (default: float16 on CUDA, else float32)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(parser)
    return parser


def output_paths(output: str, count: int) -> list[Path]:
    """OUT.png for one image; OUT-1.png ... OUT-N.png for several."""
    path = Path(output)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}") for i in range(1, count + 1)]


def run(args: argparse.Namespace) -> int:
    from ..fsio import atomic_path
    from ..generate import GenerateOptions, check_width, embed_query, open_pipeline

    if args.noise_level > 999:
        raise UsageError(f"--noise-level must be 0-999, got {args.noise_level}")
    parts, weights = query_parts(args)
    paths = output_paths(args.output, args.num_images)
    for path in paths:
        check_writable_file(path)

    pipeline = open_pipeline(args.pipeline, device=args.device, dtype=args.pipeline_dtype,
                             embed_norm=args.embed_norm)
    embedder = _embedder(args, pipeline, parts)
    model = embedder.model
    check_width(pipeline, int(model.embed_dim), model.config.name)
    query = embed_query(embedder, parts, weights)
    options = GenerateOptions(seed=args.seed, steps=args.steps, guidance=args.guidance, noise_level=args.noise_level,
                              prompt=args.prompt, negative_prompt=args.negative_prompt, num_images=args.num_images,
                              height=args.height, width=args.width,
                              progress=not args.quiet and not args.json and sys.stderr.isatty())
    images = pipeline.generate(query, options)
    for path, image in zip(paths, images):
        try:
            with atomic_path(path) as tmp:
                image.save(tmp, format="PNG")
        except OSError as exc:
            raise write_failed(path, exc) from None
    info: dict[str, Any] = pipeline.describe()
    if args.json:
        print(json.dumps({"images": [str(p) for p in paths], "seed": args.seed,
                          "query": [{"kind": k, "value": v, "weight": w} for (k, v), w in zip(parts, weights)],
                          "pipeline": info}, indent=1))
    else:
        for path in paths:
            print(path)
        embedding = info.get("embedding", {})
        if not args.quiet and "value" in embedding:
            print(f"unCLIP image_embeds = {embedding['value']:.3f} x unit query ({embedding['source']})",
                  file=sys.stderr)
    return 0


def _embedder(args: argparse.Namespace, pipeline: Any, parts: list[tuple[str, str]]) -> Any:
    """The embedding model: --checkpoint/--model, else the one the generator records, else the default."""
    from ..generate import load_embedder
    from .common import resolve_model

    if args.checkpoint or args.model or not pipeline.checkpoint:
        name, checkpoint = resolve_model(args)
        return load_embedder(pipeline, parts, checkpoint=checkpoint, model=name, device=args.device,
                             dtype=args.dtype)
    return load_embedder(pipeline, parts, device=args.device, dtype=args.dtype)


# ---------------------------------------------------------------------------- bindspace demo generate

def register_demo(demos: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`bindspace demo generate`: emergent audio -> image generation in the digits world."""
    parser = demos.add_parser(
        "generate", help="draw digits from keypad tones with a generator trained on images only",
        description="In the world of `bindspace demo` (trained first if --out holds no demo model yet), train a "
        "tiny diffusion model to draw digits from IMAGE embeddings only, then draw from the embeddings of keypad "
        "TONES it never saw. A separate classifier trained on real digits reads the drawings. Writes "
        "DIR/generator (usable with `bindspace generate --pipeline DIR/generator`) and DIR/contact_sheet.png.",
    )
    parser.add_argument("--out", metavar="DIR", required=True, help="the demo model directory (created if needed)")
    parser.add_argument("--steps", type=positive_int, help="generator training steps (default: 1500)")
    add_demo_args(parser, minimum_help="the share of tone-drawn digits recognised")
    parser.set_defaults(handler=run_demo_generate)
    return parser


def run_demo_generate(args: argparse.Namespace) -> int:
    """Run the generation demo and print its report (exit 1 below --min-accuracy)."""
    from ..generate.digits_demo import GenerateDemoSettings, run_generate_demo

    settings = GenerateDemoSettings(seed=args.seed, threads=args.threads,
                                    progress=demo_progress(args) and sys.stderr.isatty())
    if args.steps:
        settings.steps = args.steps
    out = Path(args.out)
    check_output_dir(out, "demo directory")
    out.mkdir(exist_ok=True)

    result = run_generate_demo(out, settings, log=demo_log(args))
    if args.json:
        print(json.dumps({
            "tone_accuracy": result.tone_accuracy, "image_accuracy": result.image_accuracy,
            "classifier_accuracy": result.classifier_accuracy, "chance": 0.1, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "stage_seconds": result.stage_seconds,
            "generator": str(result.generator_dir), "contact_sheet": str(result.contact_sheet),
        }, indent=1))
    else:
        print(result.report())
        print(f"\ntry it:  bindspace generate --pipeline {result.generator_dir} "
              f"--audio {out}/examples/tone_7.wav -o seven.png")
    return demo_status(result.tone_accuracy, args.min_accuracy, "tone -> digit accuracy")
