"""clip-retrieval's back-end API over a bindspace index: POST /knn-service, GET /indices-list, POST /metadata.

clip-retrieval's `ClipClient` and its web front-end search a `bindspace serve --db` as they
search a `clip-back`. The index is the one index this server has, named after its folder
(`indice_name` must be that name, or empty). A query is a `text`, a base64 `image`, an
`image_url` (fetched only from `--fetch-allow` hosts) or an `embedding_input` vector; every
indexed row answers, audio and video included, with `url` pointing at this server's
/v1/items/ID/media (a `#t=start,end` fragment for segments). `modality` (image/text) picks the
faiss index in clip-back; a bindspace index holds one kind of row, media, so both search it.
`deduplicate` drops rows whose file content (and segment) repeats a better hit; aesthetic,
safety and mclip options are accepted and ignored. Errors are Flask-RESTful's `{"message"}`.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_read
from .body import openapi_body, read_json
from .errors import ApiError, Unavailable
from .fetch import FETCH_POLICY, fetch, is_remote
from .routes import item_info, with_timeout
from .shaped_route import ShapedErrorRoute
from .state import ServeState, serve_state

MAX_RESULT_IDS = 1000  # as /v1/search's k: the rows searched for one query
Req = TypeVar("Req", bound=BaseModel)


class ClipBackRoute(ShapedErrorRoute):
    """Errors as Flask-RESTful answers them: {"message": "..."}."""

    @staticmethod
    def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
        return {"message": message}


router = APIRouter(route_class=ClipBackRoute, tags=["clip-retrieval"], dependencies=[Depends(require_read)])


class KnnRequest(BaseModel):
    """clip-back's knn-service request (what ClipClient and clip-front send)."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    image: str | None = Field(None, description="base64 image (a data: URL prefix is allowed)")
    image_url: str | None = Field(None, description="fetched only from --fetch-allow hosts")
    embedding_input: list[float] | None = None
    modality: str = Field("image", description="image or text: both search this index's media rows")
    num_images: int = Field(40, ge=1, le=MAX_RESULT_IDS)
    num_result_ids: int | None = Field(None, ge=1, description="rows searched before deduplication (at most "
                                                                f"{MAX_RESULT_IDS}: more is searched as that)")
    indice_name: str | None = None
    deduplicate: bool = False


class MetadataRequest(BaseModel):
    """clip-back's metadata request."""

    model_config = ConfigDict(extra="ignore")

    ids: list[str | int]
    indice_name: str | None = None


def index_name(state: ServeState) -> str:
    """The one index's name: the --db folder's name (as `extras["index_name"]`), else "bindspace"."""
    return str(state.extras.get("index_name") or "bindspace")


def _check(state: ServeState, indice_name: str | None) -> Any:
    if state.store is None:
        raise Unavailable("this server has no index: start it with `bindspace serve --db DIR`")
    if indice_name not in (None, "", index_name(state)):
        raise ApiError(f"no index {indice_name[:80]!r}: this server has {index_name(state)!r}", status=404,
                       kind="not_found")
    return state.store


@router.get("/indices-list", summary="clip-retrieval: the names of the indices (this server has one).")
async def indices_list(request: Request) -> list[str]:
    return [index_name(serve_state(request))]


async def _read(request: Request, model: type[Req]) -> Req:
    """The body as JSON whatever its Content-Type, as clip-back's `get_json(force=True)` reads it.

    clip-front posts `JSON.stringify(...)` without a Content-Type, so browsers declare
    `text/plain;charset=UTF-8` (which also spares a CORS preflight).
    """
    return model.model_validate(await read_json(request, empty_status=400))


@router.post("/knn-service", summary="clip-retrieval: the rows nearest a text, image or embedding.",
             openapi_extra=openapi_body(KnnRequest))
async def knn_service(request: Request) -> list[dict[str, Any]]:
    """Best first: {id, similarity, url, caption, ...metadata} per row."""
    body = await _read(request, KnnRequest)
    state = serve_state(request)
    store = _check(state, body.indice_name)
    if body.modality not in ("image", "text"):
        raise ApiError(f"modality must be image or text, not {body.modality[:40]!r}", kind="validation")
    # clip-front always asks num_result_ids=3000: a bound on the rows searched, so more is searched as the limit.
    searched = min(max(body.num_result_ids or body.num_images, body.num_images), MAX_RESULT_IDS)

    async def run() -> list:
        query = await _query(state, body)
        return await asyncio.to_thread(store.search, query, searched)

    hits = await with_timeout(request, run())
    base = str(request.base_url).rstrip("/")
    seen: set[tuple[Any, ...]] = set()
    results = []
    for hit in hits:
        item = hit.item
        key = (item.content_hash, item.segment_start, item.segment_end)
        if body.deduplicate and key in seen:
            continue
        seen.add(key)
        results.append({**_metadata(item, base), "id": str(item.id), "similarity": float(hit.score)})
        if len(results) == body.num_images:
            break
    return results


async def _query(state: ServeState, body: KnnRequest) -> np.ndarray:
    """The query as a unit (D,) vector, from whichever input the request has."""
    given = [name for name in ("text", "image", "image_url", "embedding_input") if getattr(body, name)]
    if len(given) != 1:
        raise ApiError("send one of text, image, image_url or embedding_input" +
                       (f" (got {', '.join(given)})" if given else ""), kind="validation")
    if body.text:
        return (await state.pipeline.embed_texts([body.text], ["text"]))[0]
    if body.image:
        return (await state.pipeline.embed_base64("vision", [body.image], ["image"]))[0]
    if body.image_url:
        policy = state.extras.get(FETCH_POLICY)
        if policy is None or not is_remote(body.image_url) or not policy.allows(body.image_url):
            raise ApiError("image_url: remote URLs are not fetched (the server's operator can allow hosts with "
                           "--fetch-allow); send the image as base64 in 'image'", kind="validation")
        loop = asyncio.get_running_loop()
        data, _ = await loop.run_in_executor(state.pipeline.decode_pool, fetch, body.image_url, policy, "image_url")
        return (await state.pipeline.embed_bytes("vision", [data], ["image_url"]))[0]
    vector = np.asarray(body.embedding_input, dtype=np.float32)
    dim = int(state.model.embed_dim)
    norm = float(np.linalg.norm(vector))
    if vector.shape != (dim,) or not np.isfinite(norm) or norm == 0.0:
        raise ApiError(f"embedding_input: expected {dim} finite numbers, not all zero", kind="validation")
    return vector / norm


def _metadata(item: Any, base: str) -> dict[str, Any]:
    """The metadata columns of a row: clip-back's url/caption, plus bindspace's own fields."""
    info = item_info(item)
    fragment = info["preview_url"][len(info["media_url"]):]
    return {"url": f"{base}{info['media_url']}{fragment}", "caption": info["name"],
            "image_path": info["uri"] if info["kind"] == "image" else None,
            "modality": info["modality"], "kind": info["kind"], "media_type": info["media_type"],
            "segment_start": info["segment_start"], "segment_end": info["segment_end"],
            "thumbnail_url": f"{base}{info['thumbnail_url']}" if info["thumbnail_url"] else None}


@router.post("/metadata", summary="clip-retrieval: the metadata of rows by id.",
             openapi_extra=openapi_body(MetadataRequest))
async def metadata(request: Request) -> list[dict[str, Any]]:
    """[{id, metadata}] in the order asked; unknown ids get empty metadata, as a short parquet would."""
    body = await _read(request, MetadataRequest)
    state = serve_state(request)
    store = _check(state, body.indice_name)
    state.pipeline.check_count(len(body.ids))
    base = str(request.base_url).rstrip("/")
    items = await asyncio.gather(*(asyncio.to_thread(store.get, str(item_id)) for item_id in body.ids))
    return [{"id": item_id, "metadata": _metadata(item, base) if item is not None else {}}
            for item_id, item in zip(body.ids, items)]


def clip_back_extras(db: str) -> dict[str, Any]:
    """`create_app(extras=...)` entries: the index's name as /indices-list reports it."""
    return {"index_name": os.path.basename(os.path.normpath(str(db))) or "bindspace"}
