"""`bindspace search`: query an index with text and/or media; several parts are combined."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import BindspaceError
from ..kinds import MEDIA_KINDS, tower_of
from .common import (
    add_model_args,
    add_storage_option_arg,
    model_dtype,
    model_label,
    positive_int,
    resolve_model,
    storage_options,
    weights_fingerprint,
)
from .query import add_query_options, add_text_parts, query_parts
from .startup import settled_imports

FILTERS = (*MEDIA_KINDS, "vision")

EPILOG = """\
query parts:
  every TEXT argument and every --text/--image/--audio/--video/--depth/--thermal/--imu option
  is one part; several parts are combined by embedding arithmetic: the weighted sum of their
  unit vectors, renormalised. The i-th --weight applies to the i-th part in command-line
  order (default 1; negative subtracts), e.g.
    bindspace search --db idx --image beach.jpg "at night" --weight 1 --weight 0.5
  Bare TEXT arguments must come together; use --text for a text between other parts.

model:
  by default the model recorded in the index (its checkpoint path); --checkpoint overrides, and
  a checkpoint whose weights fingerprint differs from the index's is refused.

filters:
  --modality keeps one kind of item (vision = image or video); --where is an SQL filter on the
  columns id, uri, modality, content_hash, size, mtime, segment_start, segment_end, e.g.
  --where "uri LIKE '%/2023/%' AND size > 100000"
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `search` sub-command to the parser."""
    parser = sub.add_parser(
        "search", help="search an index with text, media, or a combination",
        description="Find the items of an index closest to a query made of texts and/or media files.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_text_parts(parser)
    parser.add_argument("--db", required=True, metavar="DIR", help="the index (directory or LanceDB URI)")
    add_storage_option_arg(parser)
    parser.add_argument("-k", type=positive_int, default=10, help="number of results (default: %(default)s)")
    parser.add_argument("--modality", choices=FILTERS, help="only return items of this kind")
    parser.add_argument("--where", metavar="SQL", help="SQL filter on item columns")
    add_query_options(parser)
    parser.add_argument("--exact", action="store_true", help="exact search even when an ANN index exists")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    add_model_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run `bindspace search`; returns the exit status."""
    parts, weights = query_parts(args)
    with settled_imports():  # torch, pylance and the index's table: they live until exit
        import numpy as np

        from ..embedding import Embedder
        from ..index import open_store
        from ..model import create_model
        from ..tasks.arithmetic import combine_vectors

        store = open_store(args.db, create=False, storage_options=storage_options(args))
        info = store.model_info()
    if info is None:
        raise BindspaceError(f"{args.db}: the index is empty (nothing indexed yet)")
    name, checkpoint = resolve_model(args, info, db=args.db)
    fingerprint = weights_fingerprint(args, checkpoint)
    if fingerprint != info.checksum:
        raise BindspaceError(
            f"{checkpoint}: these weights ({model_label(name, checkpoint)}, fingerprint {fingerprint}) are not the "
            f"ones the index was built with ({info.name}, fingerprint {info.checksum}, checkpoint "
            f"{info.checkpoint}); search with the same --checkpoint, or re-index")
    towers = sorted({str(tower_of(kind)) for kind, _ in parts})
    model = create_model(name, checkpoint=checkpoint, modalities=towers, device=args.device,
                         dtype=model_dtype(args))
    embedder = Embedder(model, batch_size=1, progress=False)
    vectors = [embedder.embed(kind, [value], on_error="raise").vectors.mean(axis=0) for kind, value in parts]
    query = combine_vectors(np.stack(vectors), weights)
    hits = store.search(query, args.k, modality=args.modality, where=args.where,
                        **({"exact": True} if args.exact else {}))
    _print(args, hits, parts, weights)
    return 0


def _print(args: argparse.Namespace, hits, parts, weights) -> None:
    if args.json:
        out = {
            "query": [{"kind": k, "value": v, "weight": w} for (k, v), w in zip(parts, weights)],
            "results": [
                {"rank": i + 1, "score": round(h.score, 6), "id": h.item.id, "uri": h.item.uri,
                 "modality": h.item.modality, "segment": list(h.item.segment) if h.item.segment else None}
                for i, h in enumerate(hits)
            ],
        }
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return
    if not hits:
        print("no results", file=sys.stderr)
        return
    print(f"{'#':>3}  {'score':>7}  {'modality':<8}  {'segment':<15}  path")
    for i, hit in enumerate(hits, 1):
        seg = f"{hit.item.segment[0]:.1f}-{hit.item.segment[1]:.1f} s" if hit.item.segment else ""
        print(f"{i:>3}  {hit.score:7.4f}  {hit.item.modality:<8}  {seg:<15}  {hit.item.uri}")
