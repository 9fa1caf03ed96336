"""The `bindspace` command: one module per command group, each with `register` and `run`."""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import BindspaceError
from .common import UsageError, check_device, resolve_dtype_arg

# command -> module; modules import heavy dependencies inside `run`, so `--help` stays fast.
COMMANDS = {
    "convert": "convert",
    "embed": "embed",
    "classify": "classify",
    "eval": "evaluate",
    "train": "train",
    "demo": "demo",
    "index": "index",
    "search": "search",
    "serve": "serve",
    "generate": "generate",
    "export": "export",
    "quantize": "quantize",
    "chat": "chat",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (sub-commands whose module is absent are left out)."""
    parser = argparse.ArgumentParser(prog="bindspace", description="ImageBind embeddings for six modalities.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"bindspace {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(f".{module_name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(__name__):
                continue
            raise
        command = module.register(sub)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.set_defaults(handler=module.run)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failed input or run, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)  # before any work: a wrong device is a usage error
        resolve_dtype_arg(args)  # --dtype auto -> the concrete dtype for this machine
        return int(args.handler(args) or 0)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"bindspace {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BindspaceError as exc:
        if args.debug:
            raise
        print(f"bindspace {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bindspace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
