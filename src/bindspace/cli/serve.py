"""`bindspace serve`: the HTTP API, the search page and the Weaviate vectorizer (needs the [serve] extra)."""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ..errors import BindspaceError
from .common import (
    UsageError,
    add_model_args,
    add_storage_option_arg,
    non_negative_float,
    port_number,
    positive_float,
    positive_int,
    storage_options,
)

EPILOG = """\
endpoints (OpenAPI at /docs and /openapi.json):
  /                          search page
  POST /v1/embed             texts or base64/multipart media -> vectors
  POST /v1/search            query parts + weights + k + modality filter -> ranked items
  GET  /v1/items/ID[/media|/thumbnail], DELETE /v1/items/ID (write key)
  POST /v1/index             index server-side paths in the background (write key, --index-root)
  POST /v1/embeddings, GET /v1/models                   OpenAI-compatible embeddings (also content parts,
                                                        vLLM messages, Cohere/Voyage inputs)
  POST /v2/embed                                        Cohere's Embed v2 API (texts, images, inputs)
  POST /knn-service, GET /indices-list, POST /metadata  clip-retrieval's clip-back API (with --db)
  POST /v1/chat/completions (with --bridge DIR)         OpenAI-compatible chat about media (docs/llm.md)
  POST /v1/generate (with --pipeline DIR, write key)    query parts -> a PNG (docs/generate.md)
  POST /vectorize, GET /meta, /.well-known/live|ready   Weaviate multi2vec-bind drop-in
  GET  /healthz /readyz /metrics

keys: writes (POST /v1/index, DELETE) need the write key: BINDSPACE_API_KEY (preferred: a
command-line key is visible to other users in `ps`) or --api-key; without one, writes are
refused. Reads (embed, search, items, media, vectorize, embeddings, info) are open unless a
read key is set: BINDSPACE_READ_KEY or --read-key (the write key also reads). Health probes
and /metrics stay open. Clients send `Authorization: Bearer KEY` or `X-API-Key: KEY`.

browsers: pages of other origins (clip-retrieval's front-end) get answers only with
--cors-origin ORIGIN...; they may read, and write only with --cors-writes.

exit status: 0 stopped cleanly (Ctrl-C or SIGTERM), 1 could not start (the port is in use or not
  allowed, a bad --db/--checkpoint/--index-root; checked before the model loads where possible),
  2 usage error.

model: with --db and no --model/--checkpoint, the model recorded in the index is loaded (its
recorded checkpoint if that file still exists, else real weights from the cache or a
download); a model whose weights fingerprint differs from the index's is refused.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "serve",
        help="serve the HTTP API, the search page and a Weaviate multi2vec-bind vectorizer",
        description="Serve embeddings and search over HTTP (FastAPI + uvicorn). Binds 127.0.0.1 by default.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="DIR", help="the index to search (built by `bindspace index`); "
                        "without it the server only embeds")
    add_storage_option_arg(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=port_number, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--api-key", default=None, help="key for write endpoints (default: $BINDSPACE_API_KEY)")
    parser.add_argument("--read-key", default=None,
                        help="key for every read endpoint (default: $BINDSPACE_READ_KEY; none: reads are open)")
    parser.add_argument("--index-root", metavar="DIR", action="append", default=[],
                        help="a folder POST /v1/index may read (repeatable; default: only folders already indexed)")
    parser.add_argument("--weaviate-imu", choices=("reshape", "transpose"), default="reshape",
                        help="IMU CSV channel layout of /vectorize: 'reshape' reproduces the Weaviate container "
                             "(channels interleaved; existing collections were built so), 'transpose' is correct "
                             "(default: %(default)s)")
    parser.add_argument("--weaviate-paths", metavar="DIR", action="append", default=[],
                        help="a folder whose files /vectorize may read when an item is a file path instead of "
                             "base64, as the Weaviate container does (repeatable; relative paths resolve against "
                             "the working directory; default: none, paths are refused)")
    parser.add_argument("--fetch-allow", metavar="HOST", nargs="+", action="extend", default=[],
                        help="hosts (or host:port) whose http(s) URLs /v1/embeddings may fetch media from; redirects "
                             "only to the same host, at most --max-item-mb and --fetch-timeout seconds each "
                             "(default: none, remote URLs are refused)")
    parser.add_argument("--cors-origin", metavar="ORIGIN", nargs="+", action="extend", default=[],
                        help="origins (http(s)://HOST[:PORT]) whose web pages may call this server from a browser, "
                             "e.g. clip-retrieval's front-end; they may read, their writes are refused; '*' (every "
                             "origin) only on a server without keys (default: none, no CORS headers)")
    parser.add_argument("--cors-writes", action="store_true",
                        help="let the --cors-origin pages also write (DELETE, POST /v1/index; they must send the "
                             "write key); needs a write key and named origins")
    parser.add_argument("--fetch-timeout", type=positive_float, default=10.0, metavar="S",
                        help="time limit of one --fetch-allow fetch in seconds (default: %(default)s)")
    group = parser.add_argument_group("batching and limits")
    group.add_argument("--max-batch", type=positive_int, default=8,
                       help="items per model call: text calls (and every call on a GPU) run exactly this many, "
                            "padded, unless --free-batches; on a CPU other towers run item by item (default: "
                            "%(default)s; 1 disables micro-batching)")
    group.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                       help="how long a lone request waits for others to batch with (default: %(default)s)")
    group.add_argument("--free-batches", action="store_true",
                       help="let model calls take any number of items: a lone request runs faster, but an item's "
                            "vector may then differ in its last bits with what it was batched with (default: every "
                            "call of a shape runs --max-batch items, padded, so vectors are bit-stable)")
    group.add_argument("--plain-weights", action="store_true",
                       help="run every tower on its plain weights (default, unless --free-batches: on a CPU the "
                            "towers but text run on weights packed once for the matrix kernels, so a lone item runs "
                            "as fast per item as a batch)")
    group.add_argument("--max-items", type=positive_int, default=64, help="items per request (default: %(default)s)")
    group.add_argument("--max-body-mb", type=positive_float, default=64.0,
                       help="request body limit in MiB (default: %(default)s)")
    group.add_argument("--max-inflight-mb", type=positive_float, default=256.0,
                       help="request bodies held at once, all requests together (429 above; default: %(default)s)")
    group.add_argument("--max-item-mb", type=positive_float, default=32.0,
                       help="one media item's limit in MiB (default: %(default)s)")
    group.add_argument("--timeout", type=positive_float, default=60.0,
                       help="per-request timeout in seconds (default: %(default)s)")
    group.add_argument("--decode-threads", type=positive_int, default=2,
                       help="threads decoding request media (default: %(default)s)")
    group.add_argument("--threads", type=positive_int, default=None,
                       help="torch threads for the model (default: torch's own choice, one per physical core)")
    parser.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                        help="uvicorn's log level: debug shows every request's details, warning and above hide "
                             "the access log (default: %(default)s)")
    parser.add_argument("--bridge", metavar="DIR", help="also answer POST /v1/chat/completions with this LLM bridge "
                        "(docs/llm.md); the served model must be its encoder (default --checkpoint: the one it names)")
    parser.add_argument("--llm", metavar="PATH", help="with --bridge: the language model, a directory or a .gguf file "
                        "(default: the one it names)")
    parser.add_argument("--pipeline", metavar="DIR", help="also answer POST /v1/generate (write key) with this "
                        "generator: a Stable unCLIP directory or `bindspace demo generate`'s (docs/generate.md)")
    parser.add_argument("--detector", metavar="DIR", help="also answer POST /v1/detect (read key) with this "
                        "detector directory (docs/detect.md); its space must be the served model's")
    add_model_args(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise BindspaceError(f"serving needs the [serve] extra ({err.name} is missing): "
                             "pip install 'bindspace[serve]'") from None
    check_port_free(args.host, args.port)  # before seconds (or minutes) of model loading
    import torch

    from ..layers.packed_linear import mkl_packing_available
    from ..serve import Limits, create_app
    from ..serve.cors import CorsError, cors_policy
    from ..serve.cors import describe as describe_cors
    from ..serve.pipeline import pack_served_towers

    api_key = args.api_key or os.environ.get("BINDSPACE_API_KEY") or None
    read_key = args.read_key or os.environ.get("BINDSPACE_READ_KEY") or None
    try:
        cors = cors_policy(args.cors_origin, read_key=read_key, api_key=api_key, writes=args.cors_writes)
    except CorsError as err:
        raise UsageError(str(err)) from None

    if args.threads:
        torch.set_num_threads(args.threads)
    store = open_index(args.db, storage_options(args)) if args.db else None
    if args.bridge and not (args.checkpoint or args.model or store is not None):
        from ..serve.chat import bridge_encoder

        args.checkpoint = bridge_encoder(args.bridge)  # serve the encoder the bridge was trained with
    model, name, checksum = load_served_model(args, store)
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_item_bytes=int(args.max_item_mb * 1024 * 1024),
        max_inflight_bytes=int(max(args.max_inflight_mb, args.max_body_mb) * 1024 * 1024),
        max_items=args.max_items, request_timeout_s=args.timeout, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, fixed_batches=not args.free_batches, decode_threads=args.decode_threads)
    roots = [os.path.abspath(root) for root in args.index_root]
    for root in roots:
        if not os.path.isdir(root):
            raise BindspaceError(f"--index-root {root}: not a folder")
    weaviate_paths = [os.path.realpath(folder) for folder in args.weaviate_paths]
    for folder in weaviate_paths:
        if not os.path.isdir(folder):
            raise BindspaceError(f"--weaviate-paths {folder}: not a folder")
    routers: list = []
    extras: dict = {"weaviate_paths": weaviate_paths}
    if args.fetch_allow:
        from ..serve.fetch import FETCH_POLICY, FetchPolicy

        extras[FETCH_POLICY] = FetchPolicy.of(args.fetch_allow, max_bytes=limits.max_item_bytes,
                                              timeout_s=args.fetch_timeout)
    if store is not None:
        from ..serve.clip_back import clip_back_extras
        from ..serve.clip_back import router as clip_back_router

        routers.append(clip_back_router)  # clip-retrieval's ClipClient and front-end search the index
        extras.update(clip_back_extras(args.db))
    if args.bridge:
        from ..serve.chat import bridge_extras
        from ..serve.chat import router as chat_router

        extras.update(bridge_extras(args.bridge, model, checksum, llm=args.llm, device=args.device,
                                    dtype=getattr(torch, "float32" if args.dtype == "int8" else args.dtype)))
        routers.append(chat_router)
        print(f"bindspace serve: POST /v1/chat/completions answers with the bridge {args.bridge} "
              f"({extras['bridge_name']})", file=sys.stderr)
    if args.detector:
        from ..serve.detect_api import detector_extras
        from ..serve.detect_api import router as detect_router

        extras.update(detector_extras(args.detector, model))
        routers.append(detect_router)
        print(f"bindspace serve: POST /v1/detect finds objects with the detector {args.detector}", file=sys.stderr)
    if args.pipeline:
        from ..generate import open_pipeline
        from ..serve.generation import generator_extras
        from ..serve.generation import router as generation_router

        extras.update(generator_extras(open_pipeline(args.pipeline, device=args.device), model))
        routers.append(generation_router)
        print(f"bindspace serve: POST /v1/generate draws with {args.pipeline}", file=sys.stderr)
    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint and "://" not in args.checkpoint else None
    app = create_app(model, store, api_key=api_key, read_key=read_key, index_roots=roots,
                     imu_layout=args.weaviate_imu, limits=limits, model_name=name, model_checksum=checksum,
                     model_checkpoint=checkpoint, routers=routers, extras=extras, cors=cors)
    # Once the app accepted the model (the bridge, detector, generator read it before). Free batches keep
    # plain weights: full batches share the packing, and there MKL's larger GEMMs measured 4-8 % faster.
    if not (args.plain_weights or args.free_batches):
        packed = pack_served_towers(model, mkl_packing_available())
        if packed:
            print(f"bindspace serve: the {', '.join(str(t) for t in packed)} tower(s) run on weights packed once for "
                  "the CPU's matrix kernels (--plain-weights: not)", file=sys.stderr)
    _announce(args, name, store, api_key, read_key, roots)
    if cors is not None:
        print(f"bindspace serve: {describe_cors(cors)}", file=sys.stderr)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5,
                    server_header=False)
    except SystemExit as exc:  # uvicorn exits 3 when it cannot start (the port was taken since the check)
        if exc.code in (0, None):
            return 0
        raise BindspaceError(f"the server could not start on {_address(args.host, args.port)} (see the log line "
                             "above)") from None
    return 0


def check_port_free(host: str, port: int) -> None:
    """Fail unless this process could listen on host:port now (port 0 picks a free one: nothing to check)."""
    import errno
    import socket

    if port == 0:
        return
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindspaceError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BindspaceError(f"{_address(host, port)}: port {port} is already in use (another server "
                                     "is listening there); stop it or choose another --port") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise BindspaceError(f"{_address(host, port)}: permission denied (ports below 1024 need "
                                     "privileges); choose another --port") from None
            raise BindspaceError(f"{_address(host, port)}: cannot listen there ({exc.strerror or exc})") from None


def _address(host: str, port: int) -> str:
    return f"http://{host if ':' not in host else f'[{host}]'}:{port}/"


def open_index(uri: str, options: dict[str, str] | None = None):
    """The existing index at `uri` (never creates one: a typo must not serve an empty index)."""
    try:
        from ..index import open_store
    except ImportError as err:
        raise BindspaceError(f"--db needs the [index] extra ({err.name} is missing): "
                             "pip install 'bindspace[index]'") from None
    return open_store(uri, create=False, storage_options=options)


def load_served_model(args: argparse.Namespace, store) -> tuple[object, str, str | None]:
    """(model, name, checksum): the one given on the command line, else the one the index records."""
    from .common import load_model

    info = store.model_info() if store is not None else None
    if info is not None and not args.model and not args.checkpoint:
        from .common import resolve_model

        args.model, args.checkpoint = resolve_model(args, info, db=args.db)  # the index's model, where it is
    model = load_model(args, None)
    name = getattr(getattr(model, "config", None), "name", None) or args.model or "unknown"
    checksum = _checksum(model, args)
    if info is not None and checksum is None and info.name != name:
        raise BindspaceError(f"the index at {args.db} was built with model {info.name}, not {name}: "
                             "serve it with the same model, or re-index")
    return model, name, checksum


def _checksum(model, args: argparse.Namespace) -> str | None:
    """The weights fingerprint the index records for its model (None without the index package)."""
    try:
        from ..index.store import model_fingerprint
    except ImportError:
        return None
    return model_fingerprint(model, checkpoint=None if args.dtype == "int8" else args.checkpoint)


def protection_summary(api_key: str | None, read_key: str | None, roots: list[str], has_index: bool) -> str:
    """Exactly what the keys protect, in one line."""
    reads = ("reads (embed, search, items, media, vectorize, embeddings, info) need the read or write key"
             if read_key else "reads (embed, search, items, media, vectorize, embeddings, info) are OPEN to anyone "
             "who can connect")
    if not api_key:
        writes = "writes are disabled (no write key)"
    elif not has_index:
        writes = "writes need the write key (no index: nothing to write)"
    elif roots:
        writes = f"writes need the write key; POST /v1/index may read {', '.join(roots)}"
    else:
        writes = "writes need the write key; POST /v1/index may only refresh folders already in the index"
    return f"{reads}; {writes}; /healthz, /readyz, /metrics and /.well-known/* are open"


def _announce(args: argparse.Namespace, name: str, store, api_key: str | None, read_key: str | None,
              roots: list[str]) -> None:
    """What is served where, and exactly what is protected, on stderr (uvicorn logs the rest)."""
    where = _address(args.host, args.port)
    index = f"index {args.db} ({store.count()} items)" if store is not None else "no index (embed only)"
    print(f"bindspace serve: {name}, {index}, at {where}", file=sys.stderr)
    print(f"bindspace serve: {protection_summary(api_key, read_key, roots, store is not None)}", file=sys.stderr)
    if args.weaviate_paths:
        print(f"bindspace serve: /vectorize may read files under {', '.join(args.weaviate_paths)} by path",
              file=sys.stderr)
    if args.weaviate_imu == "transpose":
        print("bindspace serve: /vectorize reads IMU CSV columns as channels (not the Weaviate container's layout)",
              file=sys.stderr)
    if not _is_loopback(args.host):
        print(f"bindspace serve: warning: listening on {args.host}, reachable from other machines; "
              "put it behind TLS and set keys", file=sys.stderr)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
