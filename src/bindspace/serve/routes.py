"""The /v1 API: embed, search, items, index."""
from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import UploadFile

from ..errors import BindspaceError, InputError
from ..fsio import real_path_inside
from .auth import require_read, require_write
from .body import read_json
from .errors import ApiError, NotFound, TooLarge, Unavailable
from .index_job import run_index_job
from .jobs import check_index_paths
from .media import is_video_path, local_path, make_thumbnail, media_type, parse_kind
from .query import embed_query, query_weights
from .schemas import (
    DeleteResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    IndexJob,
    IndexRequest,
    ItemInfo,
    ModelInfoResponse,
    SearchRequest,
    SearchResponse,
)
from .state import ServeState, serve_state

if TYPE_CHECKING:
    from ..index.store import Item, ModelInfo, Store

router = APIRouter()
T = TypeVar("T")

ITEM_ID = Path(min_length=1, max_length=256, description="an item id as returned by search")
THUMBNAIL_CACHE_SIZE = 512
READ = [Depends(require_read)]
WRITE = [Depends(require_write)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "bad input: the message names the item and the problem"),
        (413, "body, item or item count over the server's limits"),
        (422, "invalid request fields"),
        (429, "too many items waiting for the model"),
        (504, "request took longer than the server's timeout"),
    )
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse, "description": text} for code, text in (
    (401, "missing or wrong API key"), (403, "writes are disabled: the server has no API key"))}
# /v1/embed reads JSON or multipart itself, so its two body shapes are documented by hand.
_EMBED_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EmbedRequest.model_json_schema()},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["modality"],
        "properties": {
            "modality": {"type": "string", "description": "the modality of every file (or text)"},
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "texts": {"type": "array", "items": {"type": "string"}},
        }}},
}}}

async def with_timeout(request: Request, work: Awaitable[T]) -> T:
    """Run a request's work under the per-request timeout (504 when exceeded)."""
    seconds = serve_state(request).limits.request_timeout_s
    try:
        return await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        raise ApiError(f"request took longer than the server's limit of {seconds:g} s", status=504,
                       kind="timeout") from None


# ---------------------------------------------------------------- embed


@router.post("/v1/embed", response_model=EmbedResponse, tags=["embed"], openapi_extra=_EMBED_BODY, dependencies=READ,
             responses={**_ERRORS, 415: {"model": ErrorResponse, "description": "neither JSON nor multipart"}},
             summary="Embed texts or media (JSON with base64, or multipart uploads).")
async def embed(request: Request) -> dict:
    """Unit-norm vectors, one per input, in order."""
    state = serve_state(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    texts: list[str] | None
    uploads: list[bytes] = []  # multipart files
    items: list[str] = []  # JSON base64
    names: list[str] | None
    if content_type == "multipart/form-data":
        kind, texts, uploads, names = await _read_multipart(request)
    elif content_type in ("application/json", ""):
        payload = EmbedRequest.model_validate(await read_json(request))
        kind, texts, items, names = parse_kind(payload.modality), payload.texts, payload.items or [], payload.names
    else:
        raise ApiError(f"unsupported content type {content_type!r}: send application/json or multipart/form-data",
                       status=415, kind="unsupported_media_type")
    media = uploads or items
    if kind == "text":
        if media:
            raise ApiError("media given with modality text: send the texts in 'texts'", status=422)
        if not texts:
            raise ApiError("no texts: send them in 'texts'", status=422)
        state.pipeline.check_count(len(texts))
        work = state.pipeline.embed_texts(texts, names)
    else:
        if texts:
            raise ApiError(f"texts given with modality {kind}: send {kind} data", status=422)
        if not media:
            raise ApiError(f"no items: send base64 {kind} data in 'items' (JSON) or files in 'files' (multipart)",
                           status=422)
        state.pipeline.check_count(len(media))
        if uploads:  # multipart names every file
            work = state.pipeline.embed_bytes(kind, uploads, names or [])
        else:
            work = state.pipeline.embed_base64(kind, items, names)
    vectors = await with_timeout(request, work)
    return {"model": state.model_name, "modality": kind, "dim": int(vectors.shape[1]), "vectors": vectors.tolist()}


async def _read_multipart(request: Request) -> tuple[str, list[str], list[bytes], list[str] | None]:
    """(kind, texts, file bytes, file names) from a multipart form, with the item limits applied."""
    limits = serve_state(request).limits
    form = await request.form(max_files=limits.max_items + 1, max_fields=limits.max_items + 16)
    try:
        raw_kind = form.get("modality")
        if not isinstance(raw_kind, str) or not raw_kind:
            raise ApiError("missing form field 'modality'", status=422, kind="validation")
        kind = parse_kind(raw_kind)
        texts = [v for key in ("texts", "text") for v in form.getlist(key) if isinstance(v, str)]
        uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        serve_state(request).pipeline.check_count(len(texts) + len(uploads))
        blobs, names = [], []
        for i, upload in enumerate(uploads):
            name = upload.filename or f"files[{i}]"
            data = await upload.read(limits.max_item_bytes + 1)
            if len(data) > limits.max_item_bytes:
                raise TooLarge(f"{name}: file is larger than the limit of {limits.max_item_bytes} bytes")
            if not data:
                raise InputError(name, "empty file (0 bytes)")
            blobs.append(data)
            names.append(name)
    finally:
        await form.close()
    return kind, texts, blobs, (names or None)


# ---------------------------------------------------------------- search


@router.post("/v1/search", response_model=SearchResponse, tags=["search"], dependencies=READ,
             responses={**_ERRORS, 409: {"model": ErrorResponse, "description": "the server has no index"}},
             summary="Search the index with any mix of texts and media.")
async def search(body: SearchRequest, request: Request) -> dict:
    """Query parts are embedded, combined by weighted sum, normalised, and matched against the index."""
    state = serve_state(request)
    store = _store(state)
    weights = query_weights(state, body.parts, body.weights)
    started = time.perf_counter()

    async def run() -> list:
        query = await embed_query(state, body.parts, weights)
        modality = body.modality.strip().lower() if body.modality else None
        return await asyncio.to_thread(store.search, query, body.k, modality=modality or None)

    hits = await with_timeout(request, run())
    return {"model": state.model_name, "took_ms": round((time.perf_counter() - started) * 1000, 3),
            "hits": [{**item_info(hit.item), "score": float(hit.score)} for hit in hits]}


# ---------------------------------------------------------------- items


def _store(state: ServeState) -> Store:
    if state.store is None:
        raise Unavailable("this server has no index: start it with `bindspace serve --db DIR`")
    return state.store


def _display_kind(item: Item) -> str:
    """image, video, audio, depth, thermal, imu or text: what the page shows for an item."""
    modality = str(item.modality).lower()
    if modality in ("vision", "image", "video"):
        return "video" if modality == "video" or is_video_path(str(item.uri)) else "image"
    return modality


def item_info(item: Item) -> dict:
    """ItemInfo fields of a stored item."""
    item_id = str(item.id)
    kind = _display_kind(item)
    base = f"/v1/items/{quote(item_id, safe='')}"
    start, end = getattr(item, "segment_start", None), getattr(item, "segment_end", None)
    fragment = ""
    if start is not None and end is not None:
        fragment = f"#t={float(start):g},{float(end):g}"
    elif start is not None:
        fragment = f"#t={float(start):g}"
    uri = str(item.uri)
    return {
        "id": item_id, "name": os.path.basename(uri.rstrip("/")) or uri, "uri": uri,
        "modality": str(item.modality), "kind": kind,
        "size": getattr(item, "size", None), "mtime": getattr(item, "mtime", None),
        "segment_start": start, "segment_end": end, "content_hash": getattr(item, "content_hash", None),
        "media_url": f"{base}/media", "preview_url": f"{base}/media{fragment}",
        "thumbnail_url": f"{base}/thumbnail" if kind in ("image", "video", "depth", "thermal") else None,
        "media_type": media_type(uri, kind),
    }


async def _get_item(state: ServeState, item_id: str) -> Item:
    store = _store(state)
    item = await asyncio.to_thread(store.get, item_id)
    if item is None:
        raise NotFound(f"no item with id {item_id[:80]!r}")
    return item


@router.get("/v1/items/{item_id}", response_model=ItemInfo, tags=["items"], dependencies=READ,
            responses={404: {"model": ErrorResponse}}, summary="An indexed item's metadata.")
async def get_item(request: Request, item_id: str = ITEM_ID) -> dict:
    return item_info(await _get_item(serve_state(request), item_id))


@router.head("/v1/items/{item_id}/media", include_in_schema=False, dependencies=READ)
@router.get("/v1/items/{item_id}/media", tags=["items"], dependencies=READ,
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a byte range"},
                       404: {"model": ErrorResponse}},
            summary="Stream an indexed file (by id only; Range requests supported).")
async def get_media(request: Request, item_id: str = ITEM_ID) -> FileResponse:
    state = serve_state(request)
    item = await _get_item(state, item_id)
    path = await asyncio.to_thread(indexed_file, item, state.index_roots)
    kind = _display_kind(item)
    content_type = media_type(str(item.uri), kind)
    playable = content_type.split("/")[0] in ("image", "audio", "video")
    return FileResponse(
        path, media_type=content_type if playable else "application/octet-stream",
        filename=os.path.basename(str(item.uri).rstrip("/")) or "file",
        content_disposition_type="inline" if playable else "attachment",
        # An indexed file is never a page: no scripts, even if a browser were talked into rendering it.
        headers={"Content-Security-Policy": "default-src 'none'; media-src 'self'; img-src 'self'; sandbox",
                 "Cache-Control": "private, max-age=300"},
    )


def indexed_file(item, roots: Sequence[str] = ()) -> str:
    """The real path of an item's file, only while it is the file that was indexed; NotFound otherwise.

    Its real path (links resolved) must lie in the item's own folder or in an --index-root, and its
    size and mtime must be the indexed ones: a file swapped for a link to a secret, or rewritten,
    is not streamed to readers. The real path is what gets opened, so a link swapped after this
    check changes nothing.
    """
    name = str(item.id)[:80]
    path = local_path(str(item.uri))
    if path is None:
        raise NotFound(f"item {name!r} is stored at a remote URI; only local files are served")
    try:
        real = real_path_inside(path, [os.path.dirname(os.path.abspath(path)), *roots])
        info = os.stat(real) if real is not None else None
    except (OSError, ValueError):
        real, info = None, None
    if real is None or info is None or not stat.S_ISREG(info.st_mode):
        raise NotFound(f"the file of item {name!r} is no longer on disk inside the indexed folders; re-index "
                       "to update")
    if info.st_size != item.size or info.st_mtime != item.mtime:
        raise NotFound(f"the file of item {name!r} changed since it was indexed; re-index to update")
    return real


@router.get("/v1/items/{item_id}/thumbnail", tags=["items"], response_class=Response, dependencies=READ,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": ErrorResponse}},
            summary="A JPEG thumbnail of an image, depth or thermal map, or video (at its segment).")
async def get_thumbnail(request: Request, item_id: str = ITEM_ID) -> Response:
    state = serve_state(request)
    item = await _get_item(state, item_id)
    kind = _display_kind(item)
    if kind not in ("image", "video", "depth", "thermal"):
        raise NotFound(f"no thumbnail for {kind} items")
    path = await asyncio.to_thread(indexed_file, item, state.index_roots)
    key = (str(item.id), int(item.size), float(item.mtime))
    data = state.thumbnails.get(key)
    if data is None:
        at = float(getattr(item, "segment_start", None) or 0.0)
        loop = asyncio.get_running_loop()
        try:
            thumb = await loop.run_in_executor(state.pipeline.decode_pool,
                                               lambda: make_thumbnail(path, kind, at=at))
        except InputError as err:
            raise NotFound(f"no thumbnail: {err}") from None
        data = thumb.data
        if len(state.thumbnails) >= THUMBNAIL_CACHE_SIZE:
            state.thumbnails.pop(next(iter(state.thumbnails)))  # oldest first
        state.thumbnails[key] = data
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/v1/items/{item_id}", response_model=DeleteResponse, tags=["items"],
               dependencies=WRITE, responses={**_AUTH_ERRORS, 404: {"model": ErrorResponse}},
               summary="Remove an item from the index (API key required).")
async def delete_item(request: Request, item_id: str = ITEM_ID) -> dict:
    store = _store(serve_state(request))
    deleted = await asyncio.to_thread(store.delete, [item_id])
    if not deleted:
        raise NotFound(f"no item with id {item_id[:80]!r}")
    return {"deleted": int(deleted)}


# ---------------------------------------------------------------- index


@router.post("/v1/index", response_model=IndexJob, status_code=202, tags=["index"], dependencies=WRITE,
             responses={**_AUTH_ERRORS, 400: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
             summary="Index server-side files or folders in the background (API key; allowed folders only).")
async def start_index(body: IndexRequest, request: Request) -> dict:
    """New and changed files are embedded, vanished ones dropped; poll GET /v1/index/{job_id}.

    Paths must lie under the server's --index-root folders; without any, only folders that
    already hold indexed files (and files in them) may be re-indexed (403 otherwise).
    """
    state = serve_state(request)
    store = _store(state)
    paths = await asyncio.to_thread(check_index_paths, body.paths, state.index_roots, store)
    try:
        import bindspace.index.indexer  # noqa: F401
    except ImportError as err:
        raise Unavailable(f"indexing is not available in this installation ({err})") from None
    job = state.jobs.start(paths)
    threading.Thread(target=run_index_job, name=f"bindspace-index-{job['id']}", daemon=True,
                     args=(state, job["id"], paths, body.modalities, body.segment_seconds,
                           _index_model_info(state))).start()
    return job


def _index_model_info(state: ServeState) -> ModelInfo | None:
    """The served model as the index records it (None: let the indexer fingerprint the model itself)."""
    if not state.model_checksum:
        return None
    from ..index.store import ModelInfo, precision_of

    return ModelInfo(name=state.model_name, checksum=state.model_checksum, embed_dim=int(state.model.embed_dim),
                     checkpoint=state.model_checkpoint, precision=precision_of(state.model))


@router.get("/v1/index/{job_id}", response_model=IndexJob, tags=["index"], dependencies=WRITE,
            responses={**_AUTH_ERRORS, 404: {"model": ErrorResponse}},
            summary="An indexing job's progress (finished jobs are kept for a limited time).")
async def get_index_job(request: Request, job_id: str = Path(max_length=64)) -> dict:
    job = serve_state(request).jobs.get(job_id)
    if job is None:
        raise NotFound(f"no indexing job {job_id[:64]!r} (finished jobs expire)")
    return job


# ---------------------------------------------------------------- info


@router.get("/v1/info", response_model=ModelInfoResponse, tags=["service"], dependencies=READ,
            summary="The model and the index.")
async def info(request: Request) -> dict:
    return model_info(serve_state(request))


def model_info(state: ServeState) -> dict:
    from .. import __version__

    count = None
    if state.store is not None:
        try:
            count = int(state.store.count())
        except BindspaceError:
            count = None
    return {"model": state.model_name, "checksum": state.model_checksum, "embed_dim": int(state.model.embed_dim),
            "modalities": [str(m) for m in state.model.modalities], "indexed_items": count, "version": __version__}
