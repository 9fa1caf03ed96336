"""OpenAI-compatible embeddings: POST /v1/embeddings and GET /v1/models, errors in OpenAI's shape.

Any OpenAI client (the `openai` package, LangChain, LlamaIndex, litellm, vector databases'
"OpenAI" integrations) can embed text with `base_url=http://HOST:PORT/v1`. The extension field
`modality` (image, video, vision, audio, depth, thermal, imu; default text) embeds media given
as base64 or `data:` URIs in `input`; content parts, vLLM's `messages` and Cohere/Voyage `inputs`
are read by content_parts.py. Remote URLs are fetched only from hosts allowed with
`--fetch-allow` (fetch.py). Vectors are unit-norm.
"""
from __future__ import annotations

import base64
import time
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from .auth import require_read
from .body import read_json
from .content_parts import Unit, embed_units, input_units, inputs_units, messages_unit, unit_texts
from .errors import ApiError, openai_body
from .fetch import FETCH_POLICY, FetchPolicy
from .media import parse_kind
from .routes import with_timeout
from .shaped_route import ShapedErrorRoute
from .state import ServeState, serve_state

STARTED = int(time.time())


class OpenAIRoute(ShapedErrorRoute):
    """A route whose every error (auth, validation, bad input, limits, bugs) is answered in OpenAI's error shape."""

    @staticmethod
    def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
        return openai_body(status, message, code=code, param=param)


router = APIRouter(route_class=OpenAIRoute, tags=["openai"], dependencies=[Depends(require_read)])


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings request, plus `modality`, content parts, vLLM's `messages` and Cohere/Voyage `inputs`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"model": "imagebind_huge", "input": ["a dog barking"]},
                     {"model": "imagebind_huge", "input": ["<base64 wav>"], "modality": "audio"},
                     {"model": "imagebind_huge", "input": [[{"type": "text", "text": "a dog"},
                                                            {"type": "image_url",
                                                             "image_url": {"url": "data:image/png;base64,..."}}]]},
                     {"model": "imagebind_huge", "messages": [{"role": "user", "content": [
                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}]},
                     {"model": "imagebind_huge", "inputs": [{"content": [
                         {"type": "image_url", "image_url": "data:image/png;base64,..."}]}]}]})

    model: str = Field(description="any name: the server embeds with the model it serves (see GET /v1/models)")
    input: str | list[Any] | dict[str, Any] | None = Field(
        None, description="texts, base64 media or data: URLs (with `modality`), content parts, or lists of parts "
                          "(one vector per item)")
    messages: list[Any] | None = Field(None, description="vLLM: chat messages whose user parts make one vector")
    inputs: list[Any] | None = Field(None, description="Cohere Embed v4 / Voyage: [{content: [parts]}], a vector each")
    encoding_format: Literal["float", "base64"] = Field("float", description="base64: little-endian float32 bytes")
    dimensions: int | None = Field(None, ge=1, description="keep the first N dimensions and re-normalise")
    user: str | None = Field(None, description="accepted and ignored")
    modality: str | None = Field(None, description="extension: text, image, video, vision, audio, depth, thermal or "
                                                   "imu (default: text, or what a data: URL's media type says)")


def _units(body: EmbeddingsRequest, policy: FetchPolicy | None) -> list[Unit]:
    """The request's units (one vector each), from whichever of input / messages / inputs it has."""
    given = [name for name in ("input", "messages", "inputs") if getattr(body, name) is not None]
    if len(given) != 1:
        raise ApiError("send exactly one of 'input', 'messages' (vLLM) or 'inputs' (Cohere, Voyage)"
                       + (f"; got {', '.join(given)}" if given else ""), kind="validation")
    modality = parse_kind(body.modality) if body.modality is not None else None
    if body.messages is not None:
        return messages_unit(body.messages, modality, policy)
    if body.inputs is not None:
        return inputs_units(body.inputs, modality, policy)
    return input_units(body.input, modality, policy)


@router.post("/v1/embeddings", summary="OpenAI-compatible embeddings (texts, media, content parts).")
async def embeddings(request: Request) -> dict:
    """Unit-norm vectors, one per input, as OpenAI's `{object: list, data: [...], model, usage}`."""
    state = serve_state(request)
    body = EmbeddingsRequest.model_validate(await read_json(request, empty_status=400))
    policy: FetchPolicy | None = state.extras.get(FETCH_POLICY)
    units = _units(body, policy)
    check_dimensions(state, body.dimensions, "dimensions")
    vectors = await with_timeout(request, embed_units(state, units, policy))  # (n, D) unit rows
    vectors = first_dimensions(vectors, body.dimensions)
    texts = unit_texts(units)
    tokens = token_count(state, texts) if texts else 0
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


def check_dimensions(state: ServeState, dimensions: int | None, field: str) -> None:
    """A 400 before any work when a request asks for more dimensions than the model makes."""
    if dimensions is not None and dimensions > int(state.model.embed_dim):
        raise ApiError(f"{field}: this model makes {state.model.embed_dim}-d vectors; ask for at most that",
                       kind="validation")


def first_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first `dimensions` of each unit row, re-normalised (None or the full width: unchanged)."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    kept = vectors[:, :dimensions]  # (n, dimensions)
    return kept / np.maximum(np.linalg.norm(kept, axis=1, keepdims=True), 1e-12)


def token_count(state: ServeState, texts: list[str]) -> int:
    """Tokens the model read: start and end markers included, each text cut at the context length."""
    from ..preprocess.tokenizer import get_tokenizer

    length = int(state.pipeline.options_for("text")["context_length"])
    tokenizer = get_tokenizer()
    return sum(min(len(tokenizer.encode(text)) + 2, length) for text in texts)


def _model_card(state: ServeState) -> dict:
    return {"id": state.model_name, "object": "model", "created": STARTED, "owned_by": "bindspace"}


@router.get("/v1/models", summary="OpenAI-compatible model list: the one model this server embeds with.")
async def models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(serve_state(request))]}


@router.get("/v1/models/{model_id}", summary="OpenAI-compatible model card.")
async def model(request: Request, model_id: str) -> dict:
    state = serve_state(request)
    if model_id != state.model_name:
        raise ApiError(f"no model {model_id[:80]!r}: this server serves {state.model_name}", status=404,
                       kind="model_not_found")
    return _model_card(state)
