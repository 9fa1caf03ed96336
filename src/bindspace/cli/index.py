"""`bindspace index`: embed the media under folders into a searchable LanceDB index, incrementally."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from .common import DEFAULT_MODEL, add_model_args, non_negative_int, positive_float, positive_int

MODALITIES = ("image", "video", "audio", "depth", "thermal", "imu", "vision")
TOWERS = {"image": "vision", "video": "vision", "vision": "vision", "audio": "audio", "depth": "depth",
          "thermal": "thermal", "imu": "imu"}
SHOW_SKIPPED = 20

EPILOG = """\
what is indexed:
  every file under PATH (hidden files and folders skipped) whose modality is recognised by its
  content or extension; 16-bit single-channel PNG/TIFF and 2-D .npy are depth, a folder named
  depth/, thermal/, imu/ (or a file-name word like thermal_001.png) decides for pictures and
  arrays; see docs/search.md. New and changed files are embedded (size+mtime, then sha256);
  files that vanished from under PATH are removed; bad files are skipped and listed.

model:
  the first run records the model (name, checkpoint path, weights fingerprint) in the index;
  later runs and `bindspace search` reuse the recorded checkpoint unless --checkpoint is given,
  and a different model is refused (vectors of two models must not be mixed).

exit status: 0 done (also when files were skipped), 1 error (nothing half-written), 2 usage
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "index", help="index media folders for search (incremental, crash-safe)",
        description="Embed new and changed media files under PATH into a LanceDB index; drop vanished ones.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="folders or files to index")
    parser.add_argument("--db", required=True, metavar="DIR", help="index directory or LanceDB URI (created if missing)")
    parser.add_argument("--modalities", nargs="+", choices=MODALITIES, metavar="M",
                        help=f"only index these ({', '.join(MODALITIES)}); default: all")
    parser.add_argument("--segment-seconds", type=positive_float, metavar="S",
                        help="embed audio and video in windows of S seconds (one item per window)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="files per model batch and commit "
                        "(default: %(default)s)")
    parser.add_argument("--workers", type=non_negative_int, help="decoding processes (default: min(4, CPUs-1)); "
                        "with --ray: model actors (default: one per GPU, else CPUs/2)")
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


def resolve_checkpoint(args: argparse.Namespace, recorded) -> str:
    """The checkpoint to use: --checkpoint, else the one the index recorded, else the released weights."""
    from ..model.hub import resolve_pretrained

    if args.checkpoint:
        return args.checkpoint
    if recorded is not None and recorded.checkpoint and os.path.exists(recorded.checkpoint) \
            and (args.model is None or args.model == recorded.name):
        return recorded.checkpoint
    name = args.model or (recorded.name if recorded is not None else DEFAULT_MODEL)
    return str(resolve_pretrained(name))


def model_name_for(args: argparse.Namespace, checkpoint: str, recorded) -> str | None:
    """Preset name to build (None: the model directory names its own config)."""
    from ..model.checkpoint import is_model_dir

    if args.model:
        return args.model
    if is_model_dir(checkpoint):
        return None
    return recorded.name if recorded is not None else DEFAULT_MODEL


def run(args: argparse.Namespace) -> int:
    import torch

    from ..embedding import Embedder
    from ..index.indexer import index_paths
    from ..index.store import ModelInfo, model_fingerprint, open_store
    from ..index.walk import walk_paths
    from ..model import create_model

    walk_paths(args.paths)  # a missing PATH fails before anything is loaded or written
    store = open_store(args.db, create=True)
    recorded = store.model_info()
    checkpoint = resolve_checkpoint(args, recorded)
    name = model_name_for(args, checkpoint, recorded)
    wanted = args.modalities or ["image", "video", "audio", "depth", "thermal", "imu"]
    towers = sorted({TOWERS[m] for m in wanted})
    fingerprint = model_fingerprint(None, checkpoint)
    if recorded is not None:  # refuse a different model before the (slow) model load
        store.bind_model(ModelInfo(name or recorded.name, fingerprint, recorded.embed_dim,
                                   os.path.abspath(checkpoint)))
    model = create_model(name, checkpoint=checkpoint, modalities=towers, device=args.device,
                         dtype=getattr(torch, args.dtype))
    info = ModelInfo(model.config.name, fingerprint, int(model.embed_dim), os.path.abspath(checkpoint))
    progress = False if (args.no_progress or args.json) else None
    runner = None
    embedder = None
    if args.ray is not None:
        from ..index.ray_indexer import ModelSpec, RayRunner

        spec = ModelSpec(name=name, checkpoint=os.path.abspath(checkpoint), modalities=towers, dtype=args.dtype,
                         batch_size=args.batch_size, device="auto" if args.device == "cpu" else args.device)
        runner = RayRunner(spec, address=args.ray or None, workers=args.workers, batch_files=args.batch_size)
        del model  # the actors load their own copies
    else:
        from .embed import default_workers

        workers = default_workers() if args.workers is None else args.workers
        embedder = Embedder(model, batch_size=args.batch_size, num_workers=workers, progress=False)
    summary = index_paths(
        args.paths, store, embedder, modalities=args.modalities, segment_seconds=args.segment_seconds,
        progress=progress, model_info=info, commit_files=args.batch_size, runner=runner,
        ann={"auto": None, "yes": True, "no": False}[args.ann],
    )
    _report(args, summary, store)
    return 0


def _report(args: argparse.Namespace, summary, store) -> None:
    from ..index.indexer import NOT_MEDIA

    if args.json:
        out = {
            "db": args.db, "added": summary.added, "updated": summary.updated, "removed": summary.removed,
            "unchanged": summary.unchanged, "skipped": [{"path": p, "reason": r} for p, r in summary.skipped],
            "rows_added": summary.rows_added, "rows_removed": summary.rows_removed, "items": store.count(),
            "seconds": round(summary.seconds, 3),
        }
        print(json.dumps(out, indent=1))
        return
    problems = [(p, r) for p, r in summary.skipped if r != NOT_MEDIA]
    not_media = [p for p, r in summary.skipped if r == NOT_MEDIA]
    shown = problems if args.verbose else problems[:SHOW_SKIPPED]
    for path, reason in shown:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if len(problems) > len(shown):
        print(f"... and {len(problems) - len(shown)} more skipped (-v lists all)", file=sys.stderr)
    if not_media:
        if args.verbose:
            for path in not_media:
                print(f"skipped {path}: {NOT_MEDIA}", file=sys.stderr)
        else:
            kinds = Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in not_media)
            listing = ", ".join(f"{ext} x{n}" for ext, n in kinds.most_common(5))
            print(f"ignored {len(not_media)} files that are not media ({listing})", file=sys.stderr)
    print(
        f"bindspace index: {args.db}: added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged}, skipped {len(problems)}; {store.count()} items "
        f"({summary.seconds:.1f} s)",
        file=sys.stderr,
    )
