"""The FastAPI application behind `bindspace serve`.

Extending it: a feature module defines an `APIRouter` (protect its routes with
`Depends(require_read)` / `Depends(require_write)` from `bindspace.serve.auth`, read the shared
state with `serve_state(request)` (serve/state.py: the typed `ServeState`), run the model only
through `state.batcher`) and is passed to `create_app(..., routers=[router])`; `_include_routers`
is the one place routers are included. Options a router needs go into `ServeState.extras`
(`create_app(..., extras={...})`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import BindspaceError, InputError, first_line
from ..modality import Modality
from .batcher import MicroBatcher
from .cors import CORS_POLICY, CorsPolicy, add_cors
from .docs_pages import add_docs_pages
from .errors import ApiError, error_body
from .jobs import JobTable
from .limits import Limits
from .metrics import CONTENT_TYPE, ServerMetrics
from .middleware import BodyLimitMiddleware, DefaultJsonMiddleware, MetricsMiddleware, SecurityHeadersMiddleware
from .pipeline import Forward, Pipeline, device_type_of, fixed_size_calls
from .schemas import Health
from .state import ServeState, serve_state
from .weaviate_inputs import IMU_LAYOUTS

log = logging.getLogger("bindspace.serve")
STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["create_app", "Limits", "ServeState"]


def forward_one(model: Any, modality: Modality, x: torch.Tensor) -> torch.Tensor:
    """The model's forward output for one tower's batch (B, D): scales included, clips averaged."""
    return model({modality.value: x})[modality.value]


def create_app(model: Any, store: Any = None, *, api_key: str | None = None, read_key: str | None = None,
               index_roots: Sequence[str] = (), imu_layout: str = "reshape", limits: Limits = Limits(),
               model_name: str | None = None, model_checksum: str | None = None, model_checkpoint: str | None = None,
               routers: Sequence[APIRouter] = (), extras: Mapping[str, Any] | None = None,
               cors: CorsPolicy | None = None) -> FastAPI:
    """The app for one loaded model and, optionally, one index (without it: embed-only).

    `api_key` protects writes, `read_key` (optional) every read but the health probes.
    `index_roots`: the folders POST /v1/index may read (none: only folders already indexed).
    `imu_layout`: "reshape" (the Weaviate container's channel layout) or "transpose", for /vectorize.
    `model_checksum` is the weights fingerprint: an index holding another model's vectors is refused.
    `model_checkpoint` is recorded by POST /v1/index. `routers` are included after the built-in ones.
    `cors` lets pages of other origins read (and, if it says so, write); None: no CORS headers at all.
    """
    if imu_layout not in IMU_LAYOUTS:
        raise ValueError(f"imu_layout must be one of {IMU_LAYOUTS}, got {imu_layout!r}")
    name = model_name or getattr(getattr(model, "config", None), "name", None) or "unknown"
    _check_store_model(store, model, name, model_checksum)
    model.eval()  # a served model never trains: dropout and stochastic depth would randomise vectors
    metrics = ServerMetrics(pending=lambda: float(batcher.stats.pending))
    forward: Forward = functools.partial(forward_one, model)
    if limits.fixed_batches:  # an item's vector must not depend on what it was batched with
        forward = fixed_size_calls(forward, limits.max_batch, device_type_of(model))
    batcher = MicroBatcher(forward, max_batch=limits.max_batch,
                           max_wait_s=limits.max_wait_ms / 1000.0, max_pending=limits.max_pending,
                           on_batch=metrics.on_batch)
    state = ServeState(model=model, store=store, api_key=api_key or None, limits=limits, model_name=name,
                       model_checksum=model_checksum, model_checkpoint=model_checkpoint, batcher=batcher,
                       pipeline=Pipeline(model, batcher, limits), metrics=metrics,
                       jobs=JobTable(limits.max_jobs, limits.job_ttl_s), read_key=read_key or None,
                       index_roots=tuple(str(root) for root in index_roots), imu_layout=imu_layout,
                       extras=dict(extras or {}))
    if cors is not None:
        state.extras[CORS_POLICY] = cors  # require_write refuses writes from these pages unless cors.writes

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.ready, state.not_ready_reason = False, "warming up"
        error = await _warm_up(state)
        state.ready, state.not_ready_reason = error is None, error
        try:
            yield
        finally:
            state.ready, state.not_ready_reason = False, "stopping"
            await batcher.close()
            state.pipeline.close()

    app = FastAPI(
        title="bindspace",
        version=__version__,
        summary="One embedding space for images, video, text, audio, depth, thermal and IMU.",
        description="Embed any of six modalities, search an index with any of them, act as a Weaviate "
                    "`multi2vec-bind` vectorizer, and answer OpenAI-style `/v1/embeddings`. Errors are JSON "
                    "`{error, type}` objects (OpenAI's error shape on the OpenAI endpoints).",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.bindspace = state
    # Added last = outermost: metrics see every answer, including 413/429 from the body limits.
    app.add_middleware(DefaultJsonMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes,
                       max_inflight_bytes=limits.max_inflight_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    if cors is not None:  # outside the body limits: a 413/429 must reach the page as itself, not as a CORS error
        add_cors(app, cors)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app, metrics)
    _include_routers(app, routers)
    _add_service_routes(app)
    add_docs_pages(app)
    return app


def _include_routers(app: FastAPI, extra: Sequence[APIRouter]) -> None:
    """The built-in routers, then the optional ones handed to create_app (chat, generation, ...)."""
    from .cohere_api import router as cohere_router
    from .openai_api import router as openai_router
    from .routes import router
    from .weaviate import router as weaviate_router

    for r in (router, openai_router, cohere_router, weaviate_router, *extra):
        app.include_router(r)


def _check_store_model(store, model, name: str, checksum: str | None) -> None:
    """Refuse to search an index with vectors from a different model."""
    if store is None:
        return
    info = store.model_info()
    if info is None:
        return
    if int(info.embed_dim) != int(model.embed_dim):
        raise BindspaceError(f"the index holds {info.embed_dim}-d vectors of model {info.name}; this model "
                             f"({name}) makes {model.embed_dim}-d vectors")
    if checksum and info.checksum and checksum != info.checksum:
        raise BindspaceError(f"the index was built with model {info.name} (fingerprint {info.checksum}); the "
                             f"loaded model {name} has fingerprint {checksum}: serve it with the same "
                             "--checkpoint, or re-index")


async def _warm_up(state: ServeState) -> str | None:
    """One tiny call per tower (and the index's in-memory copy); the reason the server is not ready, or None."""
    if state.store is not None and hasattr(state.store, "warm"):
        try:
            await asyncio.to_thread(state.store.warm)
        except BindspaceError as err:  # searches will report it; the server still embeds
            log.warning("loading the index failed: %s", err)
    for tower in state.model.modalities:
        try:
            await state.batcher.embed(tower, [_blank_input(state, tower)])
        except Exception as err:  # startup goes on, but readiness reports the failure instead of lying
            log.exception("warm-up of the %s tower failed", tower)
            return f"warm-up of the {tower} tower failed: {type(err).__name__}: {str(err)[:200]}"
    return None


def _blank_input(state: ServeState, tower: Modality) -> torch.Tensor:
    """A zero input of one item at the tower's own size (token ids of a short text for text)."""
    if tower == Modality.TEXT:
        return state.pipeline.tokenize(["warm up"], ["warm-up"])[0]
    cfg = state.model.tower_config(tower)
    return torch.zeros(cfg.in_channels, *cfg.input_size)  # (C, H, W) or (6, T)


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body every error has (Weaviate reads its `error` field too)."""
    return JSONResponse({"error": message, "type": kind}, status_code=status, headers=headers)


def _one_line(errors: Sequence[Any]) -> str:
    """A pydantic/FastAPI validation error list as one line: `body.k: Input should be ... (and 2 more)`."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    if first.get("type") == "json_invalid":
        message = f"request body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
    more = len(errors) - 1
    return message + (f" (and {more} more)" if more else "")


def _add_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.input_errors.inc(type=exc.kind)
        return error_response(exc.status, str(exc), exc.kind, exc.headers)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        metrics.input_errors.inc(type="bad_input")
        return error_response(400, str(exc), "bad_input")

    @app.exception_handler(BindspaceError)
    async def bindspace_error(request: Request, exc: BindspaceError) -> JSONResponse:
        metrics.input_errors.inc(type="bad_request")
        return error_response(400, first_line(exc), "bad_request")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.input_errors.inc(type="validation")
        return error_response(422, _one_line(list(exc.errors())), "validation")

    @app.exception_handler(ValidationError)
    async def model_validation_error(request: Request, exc: ValidationError) -> JSONResponse:
        metrics.input_errors.inc(type="validation")
        return error_response(422, _one_line(list(exc.errors())), "validation")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        return JSONResponse(error_body(request.url.path, exc.status_code, str(exc.detail), kind),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(asyncio.TimeoutError)
    async def timeout_error(request: Request, exc: asyncio.TimeoutError) -> JSONResponse:
        return error_response(504, "request timed out", "timeout")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__})", "internal")


def _add_service_routes(app: FastAPI) -> None:
    # The routes read the state from the request: FastAPI caches endpoint functions process-wide, and a
    # closure over the state would keep this app's model alive after the app is gone.
    @app.get("/healthz", response_model=Health, response_model_exclude_none=True, tags=["service"],
             summary="Liveness: the process answers.")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, response_model_exclude_none=True, tags=["service"],
             responses={503: {"model": Health, "description": "starting, stopping, or the warm-up failed (reason)"}},
             summary="Readiness: the model is loaded and every tower answered its warm-up call.")
    async def readyz(request: Request):
        state = serve_state(request)
        if not state.ready:
            return JSONResponse({"status": "not ready", "reason": state.not_ready_reason}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse,
             summary="Prometheus metrics (text exposition format).")
    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(serve_state(request).metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

