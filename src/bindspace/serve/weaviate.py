"""Drop-in for Weaviate's `multi2vec-bind` inference container: POST /vectorize, GET /meta, liveness, readiness.

Point Weaviate at this server with `BIND_INFERENCE_API=http://HOST:PORT`. Every media
list is base64; each answer list holds one vector per input, in order. Errors are JSON
with an `error` field, which Weaviate reports as the vectorizer's failure reason.
"""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from .routes import model_info, with_timeout
from .schemas import ErrorResponse, ModelInfoResponse, VectorizeRequest, VectorizeResponse

router = APIRouter(tags=["weaviate"])

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


@router.post("/vectorize", response_model=VectorizeResponse,
             responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
             summary="Weaviate multi2vec-bind: vectors for each list of inputs.")
async def vectorize(body: VectorizeRequest, request: Request) -> dict:
    state = request.app.state.bindspace
    pipeline = state.pipeline
    pipeline.check_count(sum(len(getattr(body, field)) for field, _, _ in FIELDS))

    async def run_one(field: str, kind: str) -> list[list[float]]:
        values = getattr(body, field)
        if not values:
            return []
        names = [f"{field}[{i}]" for i in range(len(values))]
        if kind == "text":
            vectors = await pipeline.embed_texts(values, names)
        else:
            vectors = await pipeline.embed_base64(kind, values, names)
        return vectors.tolist()

    async def run() -> list[list[list[float]]]:
        return await asyncio.gather(*(run_one(field, kind) for field, kind, _ in FIELDS))

    results = await with_timeout(request, run())
    return {answer: vectors for (_, _, answer), vectors in zip(FIELDS, results)}


@router.get("/meta", response_model=ModelInfoResponse, summary="Weaviate multi2vec-bind: model metadata.")
async def meta(request: Request) -> dict:
    return model_info(request.app.state.bindspace)


@router.get("/.well-known/live", status_code=204, response_class=Response, summary="Weaviate liveness probe.")
async def live() -> Response:
    return Response(status_code=204)


@router.get("/.well-known/ready", status_code=204, response_class=Response,
            responses={503: {"description": "still starting"}}, summary="Weaviate readiness probe.")
async def ready(request: Request) -> Response:
    return Response(status_code=204 if request.app.state.bindspace.ready else 503)
