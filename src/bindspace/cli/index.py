"""`bindspace index`: embed the media under folders into a searchable LanceDB index, incrementally."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..kinds import MEDIA_KINDS, tower_of
from .common import (
    INT8,
    Interrupted,
    UsageError,
    add_model_args,
    add_storage_option_arg,
    add_workers_arg,
    check_output_dir,
    int8_weights_fingerprint,
    model_config,
    model_dtype,
    model_label,
    positive_float,
    positive_int,
    resolve_model,
    storage_options,
    tower_names,
    weights_fingerprint,
    workers,
)

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..index.indexer import FileOutcome, FileTask, IndexSummary
    from ..index.ray_indexer import ModelSpec, RayRunner
    from ..index.store import Store

MODALITIES = (*MEDIA_KINDS, "vision")
SHOW_SKIPPED = 20

EPILOG = """\
what is indexed:
  every file under PATH (hidden files and folders skipped) whose modality is recognised by its
  content or extension; 16-bit single-channel PNG/TIFF and map-shaped 2-D .npy are depth (other
  arrays are skipped, saying why), a folder named depth/, thermal/, imu/ (or a file-name word
  like thermal_001.png) decides for pictures and arrays; see docs/search.md. An index inside
  PATH is not indexed. New and changed files are embedded (size+mtime, then sha256);
  files that vanished from under PATH are removed; bad files are skipped and listed. Files of a
  kind the model has no tower for are skipped (listed with that reason) unless --modalities asks
  for that kind, which is then an error before anything is loaded.

summary:
  "skipped N" counts the files that could not be indexed (each listed, all of them with -v; the
  "skipped" list of --json is the same files); files that are not media are counted apart
  ("not media N"; --json "not_media", -v lists them as "ignored").

model:
  the first run records the model (name, checkpoint path, weights fingerprint) in the index;
  later runs, `bindspace search` and `bindspace serve` load the recorded checkpoint (file or model
  directory) unless --checkpoint is given; if it was moved, pass --checkpoint with its new place.
  A different model is refused (vectors of two models must not be mixed).

writes:
  the --db directory is checked to be writable before the model is loaded; files are committed
  in batches of --batch-size, so a write failure (a full disk) or Ctrl-C keeps every batch
  committed before it: run again to continue. Nothing to embed loads no model.

exit status: 0 done (also when files were skipped), 1 error (nothing half-written), 2 usage
  error (also --device this machine lacks, --modalities the model has no tower for),
  130 interrupted (the line says how many items are kept)
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `index` sub-command to the parser."""
    parser = sub.add_parser(
        "index", help="index media folders for search (incremental, crash-safe)",
        description="Embed new and changed media files under PATH into a LanceDB index; drop vanished ones.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders or files to index")
    parser.add_argument("--db", required=True, metavar="DIR",
                        help="index directory or LanceDB URI such as s3://bucket/path (created if missing)")
    add_storage_option_arg(parser)
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, metavar="M",
                        help=f"only index these ({', '.join(MODALITIES)}); default: every kind the model "
                        "has a tower for")
    parser.add_argument("--segment-seconds", type=positive_float, metavar="S",
                        help="embed audio and video in windows of S seconds (one item per window)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="files per model batch and commit "
                        "(default: %(default)s)")
    add_workers_arg(parser, "; with --ray: model actors (default: one per GPU, else CPUs/2)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="distribute decoding+embedding with Ray Data; ADDRESS of a running cluster "
                        "(e.g. auto, ray://head:10001), or none to start a local Ray")
    parser.add_argument("--ann", choices=("auto", "yes", "no"), default="auto",
                        help="build an ANN index: auto = once the table has 150k rows (default), yes, no")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every skipped file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace index`; returns the exit status."""
    from ..index import open_store
    from ..index.indexer import index_paths
    from ..index.store import ModelInfo
    from ..index.walk import walk_paths

    walk_paths(args.paths)  # a missing PATH fails before anything is loaded or written
    if "://" not in args.db:
        check_output_dir(args.db, "index")  # before the model load and the embedding work
    # An existing index is opened now (its model decides what to load); a new one only once the
    # arguments have been checked, so a usage error leaves nothing behind.
    exists = "://" in args.db or os.path.exists(os.path.expanduser(args.db))
    options = storage_options(args)  # an s3:// store is reached now: a bad endpoint fails before the model load
    store = open_store(args.db, create=True, storage_options=options) if exists else None
    recorded = store.model_info() if store is not None else None
    name, checkpoint = resolve_model(args, recorded, db=args.db)
    label = model_label(name, checkpoint)
    towers = _towers_to_load(args, label, tower_names(name, checkpoint))
    fingerprint = weights_fingerprint(args, checkpoint)
    if store is None:
        store = open_store(args.db, create=True, storage_options=options)
    if recorded is not None:  # refuse a different model before the (slow) model load
        store.bind_model(ModelInfo(label, fingerprint, recorded.embed_dim, os.path.abspath(checkpoint)))
    config = model_config(name, checkpoint)
    info = ModelInfo(config.name, fingerprint, int(config.embed_dim), os.path.abspath(checkpoint),
                     precision=_precision(args, checkpoint))
    store.bind_model(info)  # a model of another precision is refused before any file is embedded
    progress = False if (args.no_progress or args.json) else None
    runner: RayRunner | LazyLocalRunner
    if args.ray is not None:
        from ..index.ray_indexer import ModelSpec, RayRunner

        int8 = args.dtype == INT8
        spec = ModelSpec(name=name, checkpoint=os.path.abspath(checkpoint), modalities=towers, dtype=args.dtype,
                         batch_size=args.batch_size, device="auto" if args.device == "cpu" else args.device,
                         build=int8_model if int8 else None, fingerprint=fingerprint if int8 else None)
        runner = RayRunner(spec, address=args.ray or None, workers=args.workers, batch_files=args.batch_size)
    else:
        def load() -> Embedder:
            from ..embedding import Embedder
            from ..model import create_model

            model = create_model(name, checkpoint=checkpoint, modalities=towers, device=args.device,
                                 dtype=model_dtype(args))
            return Embedder(model, batch_size=args.batch_size, num_workers=workers(args), progress=False)

        runner = LazyLocalRunner(load, towers, args.batch_size)
    before = store.count()
    try:
        summary = index_paths(
            args.paths, store, None, modalities=args.modalities, segment_seconds=args.segment_seconds,
            progress=progress, model_info=info, commit_files=args.batch_size, runner=runner,
            ann={"auto": None, "yes": True, "no": False}[args.ann],
        )
    except KeyboardInterrupt:
        raise Interrupted(_kept(args.db, before)) from None
    _report(args, summary, store)
    return 0


def int8_model(spec: ModelSpec, device: str) -> Any:
    """A Ray actor's int8 towers (`ModelSpec.build`): from the worker's int8 cache, built there on first use.

    A worker of another CPU kind is refused before it quantizes anything (minutes, GBs for ViT-H): its
    recipe, hence its fingerprint, differs from the index's.
    """
    from ..export import int8_cache  # noqa: F401 - registers the int8 builder in the worker process
    from ..index.ray_indexer import check_fingerprint
    from ..model import create_model

    if spec.checkpoint is not None:  # (EmbedActor checks the built model's fingerprint too)
        check_fingerprint(spec, int8_weights_fingerprint(spec.checkpoint))
    return create_model(spec.name, checkpoint=spec.checkpoint, modalities=spec.modalities, device=device,
                        dtype=INT8)


def _precision(args: argparse.Namespace, checkpoint: str) -> str | None:
    """What the index records as the vectors' precision, known without loading the model (as `precision_of`
    would read it from the loaded one: the torch dtype; None for ONNX directories and the int8 cache)."""
    from ..model.onnx_manifest import is_onnx_dir

    if args.dtype == INT8 or is_onnx_dir(checkpoint):
        return None
    return str(args.dtype)


def _kept(db: str, before: int) -> str:
    """What an interrupted run kept: every committed batch (commits are atomic), and how to go on."""
    from ..index import open_store

    try:
        now = open_store(db, create=False).count()
    except Exception:  # a store that cannot be read now: still say how to go on
        return f"every batch committed before it is kept in {db}; run the same command again to continue"
    return (f"{db} keeps {now} items ({now - before:+d} in this run: every batch committed before the "
            "interrupt); run the same command again to continue where it stopped")


class LazyLocalRunner:
    """The local embedding loop, loading the model only once there is a file to embed.

    A re-index of an unchanged folder then reads no weights (and skips the seconds that costs).
    """

    def __init__(self, load: Callable[[], Embedder], modalities: list[str], chunk_files: int) -> None:
        self.load = load
        self.modalities = modalities
        self.chunk_files = chunk_files

    def outcomes(self, tasks: Sequence[FileTask], segment_seconds: float | None) -> Iterator[FileOutcome]:
        """`LocalRunner.outcomes` with the model loaded first; nothing to embed loads nothing."""
        from ..index.indexer import LocalRunner

        if tasks:
            yield from LocalRunner(self.load(), self.chunk_files).outcomes(tasks, segment_seconds)


def _towers_to_load(args: argparse.Namespace, label: str, have: set[str]) -> list[str]:
    """Towers to load: those the asked-for kinds need; by default every media tower the model has."""
    if args.modalities:
        missing = sorted({str(tower_of(m)) for m in args.modalities} - have)
        if missing:
            raise UsageError(f"--modalities: the model {label} has no {', '.join(missing)} tower "
                             f"(it has {', '.join(sorted(have))})")
        return sorted({str(tower_of(m)) for m in args.modalities})
    # The rest are left out: their files are listed as skipped ("the loaded model has no ... tower").
    return sorted({str(tower_of(k)) for k in MEDIA_KINDS} & have)


def _report(args: argparse.Namespace, summary: IndexSummary, store: Store) -> None:
    """The summary: "skipped" always counts the same files (problems), "not media" the ignored ones."""
    from ..index.indexer import NOT_MEDIA

    problems = [(p, r) for p, r in summary.skipped if r != NOT_MEDIA]
    not_media = [p for p, r in summary.skipped if r == NOT_MEDIA]
    if args.json:
        out = {
            "db": args.db, "added": summary.added, "updated": summary.updated, "removed": summary.removed,
            "unchanged": summary.unchanged, "skipped": [{"path": p, "reason": r} for p, r in problems],
            "not_media": not_media, "rows_added": summary.rows_added, "rows_removed": summary.rows_removed,
            "items": store.count(), "seconds": round(summary.seconds, 3),
        }
        print(json.dumps(out, indent=1))
        return
    shown = problems if args.verbose else problems[:SHOW_SKIPPED]
    for path, reason in shown:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more skipped (-v lists all)", file=sys.stderr)
    if not_media:
        if args.verbose:
            for path in not_media:
                print(f"ignored {path}: {NOT_MEDIA}", file=sys.stderr)
        else:
            kinds = Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in not_media)
            listing = ", ".join(f"{ext} x{n}" for ext, n in kinds.most_common(5))
            print(f"ignored {len(not_media)} files that are not media ({listing})", file=sys.stderr)
    print(
        f"bindspace index: {args.db}: added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged}, skipped {len(problems)}, not media {len(not_media)}; "
        f"{store.count()} items ({summary.seconds:.1f} s)",
        file=sys.stderr,
    )
