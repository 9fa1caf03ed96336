"""The FastAPI application behind `bindspace serve`."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import BindspaceError, InputError
from ..modality import Modality
from .batcher import MicroBatcher
from .errors import ApiError
from .limits import Limits
from .metrics import CONTENT_TYPE, ServerMetrics
from .middleware import BodyLimitMiddleware, MetricsMiddleware, SecurityHeadersMiddleware
from .pipeline import Pipeline
from .schemas import Health

log = logging.getLogger("bindspace.serve")
STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["create_app", "Limits", "ServeState"]


@dataclass
class ServeState:
    """Everything the routes share, stored on `app.state.bindspace`."""

    model: Any
    store: Any
    api_key: str | None
    limits: Limits
    model_name: str
    model_checksum: str | None
    model_checkpoint: str | None
    batcher: MicroBatcher
    pipeline: Pipeline
    metrics: ServerMetrics
    ready: bool = False
    jobs: dict = field(default_factory=dict)
    thumbnails: dict = field(default_factory=dict)


def create_app(model, store=None, *, api_key: str | None = None, limits: Limits = Limits(),
               model_name: str | None = None, model_checksum: str | None = None,
               model_checkpoint: str | None = None) -> FastAPI:
    """The app for one loaded model and, optionally, one index (without it: embed-only).

    `model_checksum` is the weights fingerprint (`bindspace.index.store.model_checksum`): an index
    holding another model's vectors is refused. `model_checkpoint` is recorded by POST /v1/index.
    """
    name = model_name or getattr(getattr(model, "config", None), "name", None) or "unknown"
    _check_store_model(store, model, name, model_checksum)
    metrics = ServerMetrics(pending=lambda: float(batcher.stats.pending))
    batcher = MicroBatcher(lambda m, x: model.encode(m, x), max_batch=limits.max_batch,
                           max_wait_s=limits.max_wait_ms / 1000.0, max_pending=limits.max_pending,
                           on_batch=metrics.on_batch)
    state = ServeState(model=model, store=store, api_key=api_key or None, limits=limits, model_name=name,
                       model_checksum=model_checksum, model_checkpoint=model_checkpoint, batcher=batcher,
                       pipeline=Pipeline(model, batcher, limits), metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await _warm_up(state)
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            await batcher.close()
            state.pipeline.close()

    app = FastAPI(
        title="bindspace",
        version=__version__,
        summary="One embedding space for images, video, text, audio, depth, thermal and IMU.",
        description="Embed any of six modalities, search an index with any of them, and act as a "
                    "Weaviate `multi2vec-bind` vectorizer. Errors are JSON `{error, type}` objects.",
        lifespan=lifespan,
    )
    app.state.bindspace = state
    # Outermost first: metrics see every answer, including 413s from the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _add_error_handlers(app, metrics)

    from .routes import router
    from .weaviate import router as weaviate_router

    app.include_router(router)
    app.include_router(weaviate_router)
    _add_service_routes(app, state)
    return app


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


async def _warm_up(state: ServeState) -> None:
    """One tiny model call (and the index's in-memory copy), so the first request does not pay for them."""
    if state.store is not None and hasattr(state.store, "warm"):
        try:
            await asyncio.to_thread(state.store.warm)
        except BindspaceError as err:  # searches will report it; the server still embeds
            log.warning("loading the index failed: %s", err)
    if Modality.TEXT in set(state.model.modalities):
        try:
            await state.pipeline.embed_texts(["warm up"])
        except Exception:  # a failed warm-up shows up on the first request instead; it must not stop startup
            log.exception("warm-up failed")


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON body every error has (Weaviate reads its `error` field too)."""
    return JSONResponse({"error": message, "type": kind}, status_code=status, headers=headers)


def _one_line(errors: list[dict]) -> str:
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
        return error_response(400, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, "bad_request")

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
        return error_response(exc.status_code, str(exc.detail), kind, getattr(exc, "headers", None))

    @app.exception_handler(asyncio.TimeoutError)
    async def timeout_error(request: Request, exc: asyncio.TimeoutError) -> JSONResponse:
        return error_response(504, "request timed out", "timeout")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__})", "internal")


def _add_service_routes(app: FastAPI, state: ServeState) -> None:
    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness: the process answers.")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "still starting"}},
             summary="Readiness: the model is loaded and warmed up.")
    async def readyz():
        if not state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse,
             summary="Prometheus metrics (text exposition format).")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

