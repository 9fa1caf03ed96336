"""POST /v1/generate: a query of texts and media -> one PNG from the server's generator (behind the write key).

Optional router: `bindspace serve --pipeline DIR` opens the generator and passes
`create_app(..., routers=[router], extras={GENERATOR: GeneratorService(pipeline)})`. Generating
costs GPU (or many CPU) seconds, so it needs the write key like every other expensive action,
and one image is drawn at a time.
"""
from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_write
from .errors import Unavailable
from .exclusive import ExclusiveWorker
from .schemas import ErrorResponse, QueryPart
from .state import serve_state

GENERATOR = "generator"  # the ServeState.extras key
router = APIRouter()


class GeneratorService:
    """The opened generator and the worker that draws one image at a time on its own thread.

    Requests wait for the worker on the event loop, so queued ones hold no thread of the pools
    that searches and file responses use; one that times out while queued never starts. A
    drawing that has started runs to its end (the pipelines take no stop signal yet).
    """

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.lock = threading.Lock()  # for callers that draw without the worker
        self.worker = ExclusiveWorker("generate")

    def draw(self, query: np.ndarray, options: Any) -> bytes:
        """One PNG (bytes) drawn from a unit query."""
        with self.lock:
            image = self.pipeline.generate(query, options)[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


class GenerateRequest(BaseModel):
    """Draw one image from a query: its parts are embedded and combined as in search."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"parts": [{"modality": "audio", "data": "<base64 WAV>"}, {"modality": "text", "text": "at night",
                                                                  "weight": 0.5}], "seed": 7}]})

    parts: list[QueryPart] = Field(min_length=1, description="query parts; several are combined")
    weights: list[float] | None = Field(None, description="overrides the parts' own weights, one per part")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="random seed: same query + seed = same image")
    steps: int | None = Field(None, ge=1, le=200, description="denoising steps (default: the generator's)")
    guidance: float | None = Field(None, gt=0, le=50, description="guidance scale (default: the generator's)")
    noise_level: int = Field(0, ge=0, le=999, description="noise added to the embedding (freer variations)")
    prompt: str | None = Field(None, max_length=1000, description="text prompt for unCLIP's own text encoder")
    negative_prompt: str | None = Field(None, max_length=1000, description="what to steer away from (unCLIP)")
    height: int | None = Field(None, ge=8, le=2048, description="pixels (default: the generator's)")
    width: int | None = Field(None, ge=8, le=2048, description="pixels (default: the generator's)")


@router.post("/v1/generate", tags=["generate"], dependencies=[Depends(require_write)], response_class=Response,
             summary="Generate an image (PNG) from any mix of texts and media.",
             responses={200: {"content": {"image/png": {}}, "description": "the image"},
                        **{code: {"model": ErrorResponse, "description": text} for code, text in (
                            (400, "bad input: the message names the part and the problem"),
                            (401, "missing or wrong API key"), (403, "writes are disabled: no API key"),
                            (409, "this server has no generator (start it with --pipeline DIR)"),
                            (413, "body or part count over the server's limits"),
                            (422, "invalid request fields"), (504, "took longer than the server's timeout"))}})
async def generate(body: GenerateRequest, request: Request) -> Response:
    """The parts are embedded by the served model, combined, and drawn by the server's generator."""
    from ..generate import GenerateOptions
    from .query import embed_query, query_weights
    from .routes import with_timeout

    state = serve_state(request)
    service: GeneratorService | None = state.extras.get(GENERATOR)
    if service is None:
        raise Unavailable("this server has no generator: start it with `bindspace serve --pipeline DIR`")
    weights = query_weights(state, body.parts, body.weights)
    options = GenerateOptions(seed=body.seed, steps=body.steps, guidance=body.guidance, noise_level=body.noise_level,
                              prompt=body.prompt, negative_prompt=body.negative_prompt, num_images=1,
                              height=body.height, width=body.width)

    async def run() -> bytes:
        query = await embed_query(state, body.parts, weights)
        return await service.worker.run(lambda stop: service.draw(query, options))

    png = await with_timeout(request, run())
    return Response(png, media_type="image/png", headers={"X-Seed": str(body.seed)})


def generator_extras(pipeline: Any, model: Any) -> dict[str, Any]:
    """The `create_app(extras=...)` entry for a generator, after checking it fits the served model's space."""
    from ..generate import check_width

    check_width(pipeline, int(model.embed_dim), getattr(getattr(model, "config", None), "name", "the served model"))
    pipeline.load()  # before serving: the first request must not pay for loading (or find the weights broken)
    return {GENERATOR: GeneratorService(pipeline)}
