"""OpenAI-compatible embeddings: POST /v1/embeddings and GET /v1/models, errors in OpenAI's shape.

Any OpenAI client (the `openai` package, LangChain, LlamaIndex, litellm, vector databases'
"OpenAI" integrations) can embed text with `base_url=http://HOST:PORT/v1`. The extension field
`modality` (image, video, vision, audio, depth, thermal, imu; default text) embeds media given
as base64 or `data:` URIs in `input`. Remote URLs are never fetched. Vectors are unit-norm.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from ..errors import BindspaceError, InputError
from .auth import require_read
from .errors import ApiError
from .media import parse_kind
from .routes import with_timeout

STARTED = int(time.time())


def openai_error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    return (f"{'.'.join(loc)}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid request")),
            loc[0] if loc else None)


class OpenAIRoute(APIRoute):
    """A route whose every error (auth, validation, bad input, limits) is answered in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as err:
                kind = "authentication_error" if err.status == 401 else (
                    "rate_limit_error" if err.status == 429 else "invalid_request_error")
                status = 400 if err.status == 422 else err.status  # OpenAI answers invalid fields with 400
                return openai_error(status, str(err), kind, code=err.kind, headers=err.headers)
            except InputError as err:
                return openai_error(400, str(err), "invalid_request_error", param="input", code="bad_input")
            except (RequestValidationError, ValidationError) as err:
                message, param = _validation_message(list(err.errors()))
                return openai_error(400, message, "invalid_request_error", param=param, code="validation")
            except BindspaceError as err:
                return openai_error(400, str(err).splitlines()[0] if str(err) else type(err).__name__,
                                    "invalid_request_error", code="bad_request")
            except HTTPException as err:
                return openai_error(err.status_code, str(err.detail), "invalid_request_error")

        return handle


router = APIRouter(route_class=OpenAIRoute, tags=["openai"], dependencies=[Depends(require_read)])


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request, plus `modality`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"model": "imagebind_huge", "input": ["a dog barking"]},
                     {"model": "imagebind_huge", "input": ["<base64 wav>"], "modality": "audio"}]})

    model: str = Field(description="any name: the server embeds with the model it serves (see GET /v1/models)")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text or a list of texts; with `modality`, base64 media or data: URIs")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes")
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions and re-normalise")
    user: str | None = Field(None, description="accepted and ignored")
    modality: str = Field("text", description="extension: text, image, video, vision, audio, depth, thermal or imu")


@router.post("/v1/embeddings", summary="OpenAI-compatible embeddings (texts, or media with `modality`).")
async def embeddings(request: Request) -> dict:
    """Unit-norm vectors, one per input, as OpenAI's `{object: list, data: [...], model, usage}`."""
    state = request.app.state.bindspace
    body = EmbeddingsRequest.model_validate(await _json(request))
    kind = parse_kind(body.modality)
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise ApiError("input: must not be empty", kind="validation")
    if not all(isinstance(item, str) for item in items):
        raise ApiError("input: token arrays are not supported; send strings", kind="validation")
    texts: list[str] = [str(item) for item in items]
    if kind != "text" and any(t.startswith(("http://", "https://")) for t in texts):
        raise ApiError("input: remote URLs are not fetched; send base64 data or data: URIs", kind="validation")
    if body.dimensions is not None and body.dimensions > int(state.model.embed_dim):
        raise ApiError(f"dimensions: this model makes {state.model.embed_dim}-d vectors; ask for at most that",
                       kind="validation")
    state.pipeline.check_count(len(texts))
    names = [f"input[{i}]" for i in range(len(texts))]
    if kind == "text":
        work = state.pipeline.embed_texts(texts, names)
    else:
        work = state.pipeline.embed_base64(kind, texts, names)
    vectors = await with_timeout(request, work)  # (n, D) unit rows
    if body.dimensions is not None and body.dimensions < vectors.shape[1]:
        vectors = vectors[:, : body.dimensions]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    tokens = _token_count(state, texts) if kind == "text" else 0
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _encode(row, body.encoding_format)}
                 for i, row in enumerate(vectors)],
        "model": state.model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode()
    return [float(x) for x in row]


def _token_count(state: Any, texts: list[str]) -> int:
    """Tokens the model read: start and end markers included, each text cut at the context length."""
    from ..preprocess.tokenizer import get_tokenizer

    length = int(state.pipeline.options_for("text")["context_length"])
    tokenizer = get_tokenizer()
    return sum(min(len(tokenizer.encode(text)) + 2, length) for text in texts)


async def _json(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise ApiError("empty request body: send a JSON object", status=400, kind="validation")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(f"request body is not valid JSON ({err})", status=400, kind="bad_json") from None


def _model_card(state: Any) -> dict:
    return {"id": state.model_name, "object": "model", "created": STARTED, "owned_by": "bindspace"}


@router.get("/v1/models", summary="OpenAI-compatible model list: the one model this server embeds with.")
async def models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(request.app.state.bindspace)]}


@router.get("/v1/models/{model_id}", summary="OpenAI-compatible model card.")
async def model(request: Request, model_id: str) -> dict:
    state = request.app.state.bindspace
    if model_id != state.model_name:
        raise ApiError(f"no model {model_id[:80]!r}: this server serves {state.model_name}", status=404,
                       kind="model_not_found")
    return _model_card(state)
