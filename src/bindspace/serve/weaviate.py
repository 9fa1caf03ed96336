"""Drop-in for Weaviate's `multi2vec-bind` inference container: POST /vectorize, GET /meta, liveness, readiness.

Point Weaviate at this server with `BIND_INFERENCE_API=http://HOST:PORT`. Media items are
base64, or file paths under the folders allowed by `--weaviate-paths` (as the container reads
paths from its working directory); each answer list holds one vector per input, in order. The vectors are the
model's forward outputs as the container returns them (text times its logit scale, audio
x20, depth x5, thermal x10, IMU x5, vision unit-norm), not unit vectors: Weaviate combines
an object's modality vectors with weights, so the scale is part of every stored vector.
Errors are JSON with an `error` field, which Weaviate reports as the vectorizer's failure.
"""
from __future__ import annotations

import asyncio
import re

import torch
from fastapi import APIRouter, Depends, Request, Response

from ..errors import InputError
from ..modality import Modality
from ..preprocess.batching import NPY_MAGIC
from .auth import require_read
from .data_url import has_data_scheme
from .media import decode_base64, load_media
from .routes import model_info, with_timeout
from .schemas import ErrorResponse, ModelInfoResponse, VectorizeRequest, VectorizeResponse
from .state import ServeState, serve_state
from .weaviate_inputs import is_path_like, load_gray, load_imu_csv, read_allowed_file

router = APIRouter(tags=["weaviate"])
# create_app(..., extras={PATHS_OPTION: [DIR, ...]}): the folders whose files /vectorize may read by path.
PATHS_OPTION = "weaviate_paths"
_WHITESPACE = re.compile(r"\s+")
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX: longer invalid base64 is reported as base64, never as a path

# request field -> (our modality kind, response field)
FIELDS = (
    ("texts", "text", "textVectors"),
    ("images", "image", "imageVectors"),
    ("audio", "audio", "audioVectors"),
    ("video", "video", "videoVectors"),
    ("imu", "imu", "imuVectors"),
    ("thermal", "thermal", "thermalVectors"),
    ("depth", "depth", "depthVectors"),
)


def item_bytes(state: ServeState, item: str, name: str) -> bytes:
    """A media item's bytes: base64 (line breaks allowed), or a file path inside the --weaviate-paths folders."""
    max_bytes = state.limits.max_item_bytes
    roots = state.extras.get(PATHS_OPTION, ())
    if isinstance(item, str) and is_path_like(item):
        return read_allowed_file(item, name, roots, max_bytes)
    if isinstance(item, str) and not has_data_scheme(item):
        item = _WHITESPACE.sub("", item)  # base64 wrapped at 76 columns (MIME style) is still base64
    try:
        return decode_base64(item, name, max_bytes)
    except InputError:
        # "/srv/media/clip" uses only base64 characters: invalid base64 of path length with a slash is a path.
        if isinstance(item, str) and "/" in item and len(item) <= MAX_PATH_CHARS:
            return read_allowed_file(item, name, roots, max_bytes)
        raise


def decode_item(state: ServeState, kind: str, item: str, name: str) -> tuple[Modality, str, torch.Tensor]:
    """One media item -> (tower, kind, model input) read as the container reads it, at the model's sizes."""
    pipeline = state.pipeline
    data = item_bytes(state, item, name)
    options = pipeline.options_for(kind)
    if kind in ("depth", "thermal"):
        return Modality(kind), kind, load_gray(data, name, size=int(options["size"]))
    if kind == "imu" and not data.startswith(NPY_MAGIC):  # .npy arrays (our extension) use our IMU loader
        return Modality.IMU, kind, load_imu_csv(data, name, length=int(options["length"]), layout=state.imu_layout)
    return load_media(kind, data, name, pipeline.options_for)


@router.post("/vectorize", response_model=VectorizeResponse, dependencies=[Depends(require_read)],
             responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Weaviate multi2vec-bind: the model's output vectors for each list of inputs.")
async def vectorize(body: VectorizeRequest, request: Request) -> dict:
    state = serve_state(request)
    pipeline = state.pipeline
    pipeline.check_count(sum(len(getattr(body, field)) for field, _, _ in FIELDS))

    async def run_one(field: str, kind: str) -> list[list[float]]:
        values = getattr(body, field)
        if not values:
            return []
        pipeline.check_tower(kind)
        names = [f"{field}[{i}]" for i in range(len(values))]
        if kind == "text":
            vectors = await pipeline.embed_texts(values, names, scaled=True)
        else:
            jobs = [(decode_item, state, kind, value, name) for value, name in zip(values, names)]
            vectors = await pipeline.embed_decoded(jobs, scaled=True)
        return vectors.tolist()

    async def run() -> list[list[list[float]]]:
        return await asyncio.gather(*(run_one(field, kind) for field, kind, _ in FIELDS))

    results = await with_timeout(request, run())
    return {answer: vectors for (_, _, answer), vectors in zip(FIELDS, results)}


@router.get("/meta", response_model=ModelInfoResponse, dependencies=[Depends(require_read)],
            summary="Weaviate multi2vec-bind: model metadata.")
async def meta(request: Request) -> dict:
    return model_info(serve_state(request))


# The container's health check is `wget --spider`, a HEAD request: both methods answer.
@router.head("/.well-known/live", status_code=204, response_class=Response, include_in_schema=False)
@router.get("/.well-known/live", status_code=204, response_class=Response, summary="Weaviate liveness probe.")
async def live() -> Response:
    return Response(status_code=204)


@router.head("/.well-known/ready", status_code=204, response_class=Response, include_in_schema=False)
@router.get("/.well-known/ready", status_code=204, response_class=Response,
            responses={503: {"description": "starting, or the warm-up failed"}}, summary="Weaviate readiness probe.")
async def ready(request: Request) -> Response:
    return Response(status_code=204 if serve_state(request).ready else 503)
