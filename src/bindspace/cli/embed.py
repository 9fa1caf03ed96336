"""`bindspace embed`: embed many inputs of one modality into a .npy, .parquet or .jsonl file."""
from __future__ import annotations

import argparse
import os
import sys

from ..kinds import KINDS, SEGMENTABLE, has_extension
from .common import (
    Interrupted,
    UsageError,
    add_model_args,
    add_workers_arg,
    check_writable_file,
    positive_float,
    positive_int,
    workers,
    write_failed,
)

EPILOG = """\
outputs (by the suffix of -o):
  .npy      float32 array (N, D), one row per embedded input (or segment) in input order
  .jsonl    one JSON object per row: index (input position), name, [start, end,] vector
  .parquet  the same columns (needs pyarrow: pip install 'bindspace[parquet]')
  --segment-seconds needs .jsonl or .parquet: a .npy has no columns to say which file and time
  window a row is. OUT is checked to be writable before the model is loaded; a failed write
  (full disk) leaves no partial file and an existing OUT untouched.

inputs:
  text      each INPUT argument is one text; --from-file gives one text per line (an empty
            line is an empty text; only the line break is stripped)
  others    file paths; a directory is searched recursively (sorted) for files with the
            modality's extensions (hidden files skipped); --from-file lists one path per
            line (blank lines ignored; relative paths are relative to the current directory)

exit status:
  0  everything embedded; with --on-error skip also when some inputs were skipped: each is
     listed on stderr, then a summary "embedded N, skipped M"
  1  a bad input with --on-error fail (one line naming it; no output is written), all inputs
     skipped, the model/weights could not be loaded, or OUT cannot be written
  2  usage error (unknown output suffix, no inputs, unreadable --from-file, a --device this
     machine lacks, --segment-seconds with .npy)
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `embed` sub-command to the parser."""
    parser = sub.add_parser(
        "embed",
        help="embed files or texts of one modality into .npy/.parquet/.jsonl",
        description="Embed inputs of one modality with a model's trained weights (the released ImageBind by default, "
        "or any --checkpoint: a .pth, a converted, trained or demo model directory); vectors are unit-norm float32.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="texts (text) or files/directories (others)")
    parser.add_argument("--modality", required=True, choices=KINDS)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file: .npy, .parquet or .jsonl")
    parser.add_argument("--from-file", metavar="LIST", help="read inputs from LIST, one per line ('-': stdin)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="inputs per model call (default: 32)")
    add_workers_arg(parser)
    parser.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                        help="fail: stop at the first bad input and write nothing (default); "
                        "skip: embed the rest and list the bad ones on stderr")
    parser.add_argument("--segment-seconds", type=positive_float, metavar="S",
                        help="audio/video: one vector per consecutive S-second window (adds start/end columns)")
    add_model_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace embed`; returns the exit status."""
    from ..embedding.output import OutputFormatError, check_output, table_from_result, write_embeddings

    try:
        fmt = check_output(args.output)
    except OutputFormatError as exc:
        raise UsageError(str(exc)) from None
    if args.segment_seconds is not None and args.modality not in SEGMENTABLE:
        raise UsageError("--segment-seconds applies to audio and video only")
    if args.segment_seconds is not None and fmt == "npy":
        raise UsageError("--segment-seconds needs a .jsonl or .parquet output: a .npy cannot say which file "
                         "and time window each row is")
    items = _gather_inputs(args)
    if not items:
        raise UsageError("no inputs (give INPUT arguments, a directory with matching files, or --from-file)")
    check_writable_file(args.output)  # before the model load and the embedding work

    from ..embedding import Embedder
    from ..errors import CheckpointError
    from ..modality import as_modality
    from .common import load_model

    try:
        model = load_model(args, [as_modality(args.modality)])
    except CheckpointError as exc:
        raise CheckpointError(" ".join(str(exc).split("\n"))) from None  # one line on stderr
    embedder = Embedder(model, batch_size=args.batch_size, num_workers=0 if args.modality == "text" else workers(args),
                        device=args.device)
    skip = args.on_error == "skip"
    try:
        result = embedder.embed(args.modality, items, on_error="skip" if skip else "raise",
                                segment_seconds=args.segment_seconds)
    except KeyboardInterrupt:
        raise Interrupted(f"nothing was written ({args.output} is written whole at the end, so an earlier "
                          "file there is untouched); running it again starts over") from None
    for err in result.errors:
        print(f"bindspace embed: skipped {err.name}: {err.message}", file=sys.stderr)
    if not result.indices:
        print(f"bindspace embed: error: nothing embedded: all {len(items)} inputs were skipped; "
              f"{args.output} not written", file=sys.stderr)
        return 1
    try:
        write_embeddings(args.output, table_from_result(result))
    except OSError as exc:  # a full disk, a vanished folder: the atomic writer left nothing behind
        raise write_failed(args.output, exc) from exc
    embedded = len(set(result.indices))
    rows = f" ({len(result.indices)} rows)" if args.segment_seconds is not None else ""
    print(f"bindspace embed: embedded {embedded}, skipped {len(result.errors)}{rows} -> {args.output}",
          file=sys.stderr)
    return 0


def _gather_inputs(args: argparse.Namespace) -> list[str]:
    """Texts or file paths, in the order given; directories expanded."""
    listed = _read_list(args.from_file, keep_empty=args.modality == "text") if args.from_file else []
    if args.modality == "text":
        return list(args.inputs) + listed
    paths: list[str] = []
    for entry in list(args.inputs) + listed:
        paths.extend(_walk(entry, args.modality) if os.path.isdir(entry) else [entry])
    return paths


def _read_list(source: str, *, keep_empty: bool) -> list[str]:
    """Lines of a list file without their line breaks; blank lines kept only for text."""
    try:
        if source == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise UsageError(f"--from-file {source}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--from-file {source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines if keep_empty else [line for line in lines if line.strip()]


def _walk(top: str, kind: str) -> list[str]:
    """Files under `top` with one of the kind's extensions, hidden files and folders skipped, sorted by path."""
    found: list[str] = []
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, f) for f in files
                     if not f.startswith(".") and has_extension(f, kind))
    return sorted(found)
