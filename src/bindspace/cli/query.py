"""Query parts on the command line (`search`, `generate`): TEXT arguments, --image/--audio/... FILE, --weight."""
from __future__ import annotations

import argparse
from typing import Any

from ..kinds import KINDS
from .common import UsageError, check_input_file


class _Part(argparse.Action):
    """Appends (kind, value) to `parts`, keeping the command-line order across options."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        self.kind = kind
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parts = list(getattr(namespace, "parts", None) or [])
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                parts.append((self.kind, value))
        namespace.parts = parts


def add_text_parts(parser: argparse.ArgumentParser) -> None:
    """The positional TEXT query parts (add before the command's other positionals and options)."""
    parser.add_argument("texts", nargs="*", metavar="TEXT", action=_Part, kind="text", default=None,
                        help="a text query part")


def add_query_options(parser: argparse.ArgumentParser) -> None:
    """--text/--image/--audio/--video/--depth/--thermal/--imu parts and the repeatable --weight."""
    for kind in KINDS:
        parser.add_argument(f"--{kind}", action=_Part, kind=kind, dest="parts", metavar="TEXT" if kind == "text"
                            else "FILE", help=f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} query part"
                            + ("" if kind == "text" else " (a file)"))
    parser.add_argument("--weight", type=float, action="append", default=None, metavar="W",
                        help="weight of the i-th query part, in command-line order (repeatable; default 1)")
    parser.set_defaults(parts=None)


def query_parts(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[float]]:
    """The (kind, value) parts in command-line order and one weight each; usage errors exit 2, missing files 1."""
    parts: list[tuple[str, str]] = args.parts or []
    if not parts:
        raise UsageError("give a query: TEXT and/or --image/--audio/--video/--depth/--thermal/--imu FILE")
    weights = list(args.weight or [])
    if len(weights) > len(parts):
        raise UsageError(f"{len(weights)} --weight values for {len(parts)} query parts")
    weights += [1.0] * (len(parts) - len(weights))
    for kind, value in parts:
        if kind != "text":
            check_input_file(value, f"--{kind}")
    return parts, weights
