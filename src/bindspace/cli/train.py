"""`bindspace train`: bind a new modality to a frozen space from a config file (one process or torchrun)."""
from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `train` sub-command to the parser."""
    parser = sub.add_parser(
        "train",
        help="bind a new modality to the frozen space with InfoNCE (config file; torchrun for many GPUs)",
        description="Train a target tower against a frozen anchor tower on pairs (CSV/JSONL manifests or tar "
        "shards), then export a model directory usable with --checkpoint everywhere. Many GPUs: "
        "torchrun --nproc-per-node N -m bindspace.cli train CONFIG. A run resumes from its latest "
        "checkpoint when started again. See docs/training.md.",
    )
    parser.add_argument("config", nargs="?", help="TOML, YAML or JSON config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a setting, e.g. --set run.steps=100 --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("--out-dir", help="shortcut for --set run.out_dir=DIR")
    parser.add_argument("--steps", type=int, help="shortcut for --set run.steps=N")
    parser.add_argument("--resume", help="'auto' (default: continue out_dir), 'never', or a checkpoint file")
    parser.add_argument("--check", action="store_true", help="validate the config and print it; do not train")
    parser.add_argument("--export-only", nargs="?", const="latest", metavar="CHECKPOINT",
                        help="export a training checkpoint (default: the latest) to out_dir/model and stop")
    parser.add_argument("--recipe", metavar="NAME",
                        help=f"print a recipe's config ({', '.join(recipe_names())})")
    parser.add_argument("--prepare", nargs=2, metavar=("DATASET", "ROOT"),
                        help="write the pair manifest for a recipe's dataset found under ROOT (needs --manifest)")
    parser.add_argument("--manifest", help="output JSONL for --prepare")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="with --prepare: put every 1/F-th pair in <manifest>_val.jsonl instead")
    parser.add_argument("--split", default="train", help="with --prepare llvip: train, test or all")
    parser.add_argument("--segments", help="with --prepare audioset: the official segments CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    return parser


def recipe_names() -> list[str]:
    """The recipes `--recipe` knows (read from the recipe table, so the help never misses one)."""
    from ..train.recipes import RECIPES

    return list(RECIPES)


def run(args: argparse.Namespace) -> int:
    """Run `bindspace train`; returns the exit status."""
    import logging

    from .common import UsageError

    if args.recipe:
        from ..train.recipes import recipe_text

        sys.stdout.write(recipe_text(args.recipe))
        return 0
    if args.prepare:
        return _prepare(args)
    if not args.config:
        raise UsageError("give a CONFIG file (or --recipe NAME to print an example)")
    from ..detect import recipe as _detect_recipe  # noqa: F401  registers kind = "detect" with train
    from ..llm import recipe as _llm_recipe  # noqa: F401  registers kind = "llm" with train
    from ..train.config import load_config

    overrides = list(args.overrides)
    if args.out_dir:
        overrides.append(f"run.out_dir={_quote(args.out_dir)}")
    if args.steps is not None:
        overrides += [f"run.steps={args.steps}", "run.epochs=none"]
    if args.resume:
        overrides.append(f"run.resume={_quote(args.resume)}")
    if args.quiet:
        overrides.append("run.progress=false")
    config = load_config(args.config, overrides)
    if args.check:
        import json

        print(json.dumps(config.to_dict(), indent=1))
        return 0
    import os

    rank = int(os.environ.get("RANK", "0"))
    level = logging.WARNING if args.quiet or rank != 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if args.export_only:
        from ..train.api import export_checkpoint

        checkpoint = None if args.export_only == "latest" else args.export_only
        out = export_checkpoint(config, checkpoint)
        print(f"exported {out}")
        return 0
    from ..train.api import train

    try:
        output = train(config)
    except KeyboardInterrupt:
        from .common import Interrupted

        again = ("run the same command again to resume from the latest" if config.run.resume != "never" else
                 "run it again with --resume auto to resume from the latest (run.resume = never starts over)")
        raise Interrupted(f"checkpoints saved in {config.run.out_dir} are kept (the last finished step is saved "
                          f"on the way out); {again}") from None
    if rank == 0:
        print("\n".join(output.summary()))
    return 0


def _quote(value: str) -> str:
    import json

    return json.dumps(value)  # a TOML basic string, so paths with odd characters stay strings


def _prepare(args: argparse.Namespace) -> int:
    from ..train.recipes import prepare
    from .common import UsageError

    dataset, root = args.prepare
    if not args.manifest:
        raise UsageError("--prepare needs --manifest OUT.jsonl")
    options: dict = {"val_fraction": args.val_fraction}
    if dataset == "llvip":
        options["split"] = args.split
    if dataset == "audioset" and args.segments:
        options["segments"] = args.segments
    count = prepare(dataset, root, args.manifest, **options)
    print(f"wrote {count} pairs to {args.manifest}" + (" (and the _val split)" if args.val_fraction else ""))
    return 0
