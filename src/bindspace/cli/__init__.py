"""The `bindspace` command: one module per command group, each with `register` and `run`."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from ..errors import BindspaceError
from .common import Interrupted, UsageError, check_device, resolve_dtype_arg
from .startup import finish

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
    "detect": "detect",
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
    """Entry point; returns the exit code (0 ok, 1 failed input or run, 2 usage error, 130 interrupted,
    141 output closed early, as by `| head`).

    With argv None (the process's own command line: the `bindspace` script, `python -m bindspace.cli`)
    the interpreter exits next, and does so without collecting what the command leaves (see
    `startup`); a caller passing argv (a test, a script) gets its process back as it was.
    """
    try:
        return _main(argv)
    finally:
        finish(exiting=argv is None)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", None) is not None:
            check_device(args.device)  # before any work: a wrong device is a usage error
        resolve_dtype_arg(args)  # --dtype auto -> the concrete dtype for this machine
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, so a reader that went away is noticed below, not at interpreter exit
        return code
    except BrokenPipeError:
        if args.debug:
            raise
        # The reader (`| head`) has what it wanted: stop quietly, as Unix tools do. Python would
        # flush stdout again at exit and complain, so point it at /dev/null first.
        _silence_stdout()
        return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1
    except Interrupted as exc:
        print(f"bindspace {args.command}: interrupted; {exc}", file=sys.stderr)
        return 130
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
        print(f"bindspace {args.command}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Send whatever stdout still holds to /dev/null (its reader is gone)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no real file (a test's capture): nothing to flush at exit
        pass


if __name__ == "__main__":
    sys.exit(main())
