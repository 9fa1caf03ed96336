"""Cohere's Embed v2 API: POST /v2/embed with `texts`, `images` (data URIs) or `inputs`, errors in Cohere's shape.

The official client works unchanged: `cohere.ClientV2(api_key=KEY, base_url="http://HOST:PORT")
.embed(model=..., input_type=..., texts=[...], embedding_types=["float"])`. `texts` give one text
vector each, `images` one media vector each (the data URI's media type decides the kind, as on
/v1/embeddings), `inputs: [{"content": [parts]}]` one combined vector each (content_parts.py).
`input_type` is checked and changes nothing: ImageBind has no instruction prefixes.

Embedding types: `float`, `base64` (little-endian float32 bytes), `ubinary` (the signs packed
8 to a byte, first dimension in the top bit: positive -> 1) and `binary` (the same bytes minus
128, as signed ints). `int8`/`uint8` are refused: Cohere scales them with ranges calibrated on
its own model's vectors, and this model has no such calibration. `output_dimension` keeps the
first N dimensions, re-normalised (as `dimensions` on /v1/embeddings).
"""
from __future__ import annotations

import asyncio
import base64
import io
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BindspaceError
from .auth import require_read
from .body import openapi_body, read_json
from .content_parts import Part, Unit, embed_units, inputs_units, parse_part, unit_texts
from .errors import ApiError, cohere_body
from .fetch import FETCH_POLICY, FetchPolicy
from .media import decode_base64
from .openai_api import check_dimensions, first_dimensions, token_count
from .routes import with_timeout
from .shaped_route import ShapedErrorRoute
from .state import ServeState, serve_state

INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COMPUTED_TYPES = ("float", "base64", "binary", "ubinary")
REFUSED_TYPES = ("int8", "uint8")
TRUNCATE = ("NONE", "START", "END")


class CohereRoute(ShapedErrorRoute):
    """Every error (auth, validation, limits, bugs) as Cohere answers them: {"id", "message"}."""

    @staticmethod
    def error_body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
        return cohere_body(message)


router = APIRouter(route_class=CohereRoute, tags=["cohere"], dependencies=[Depends(require_read)])


class CohereEmbedRequest(BaseModel):
    """Cohere's Embed v2 request body."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "examples": [{"model": "embed-v4.0", "input_type": "search_query", "embedding_types": ["float"],
                      "texts": ["a dog barking"]},
                     {"model": "embed-v4.0", "input_type": "image", "images": ["data:image/png;base64,..."]},
                     {"model": "embed-v4.0", "input_type": "search_document", "inputs": [{"content": [
                         {"type": "text", "text": "a dog"},
                         {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}]}]})

    model: str = Field(description="any name: the server embeds with the model it serves")
    texts: list[str] | None = Field(None, description="one vector per text")
    images: list[str] | None = Field(None, description="data URIs (image/*; also audio/* or video/*), a vector each")
    inputs: list[Any] | None = Field(None, description="[{content: [parts]}]: one combined vector each")
    input_type: str | None = Field(None, description=f"one of {', '.join(INPUT_TYPES)}; does not change vectors")
    embedding_types: list[str] | None = Field(None, description="float (default), base64, binary, ubinary")
    output_dimension: int | None = Field(None, ge=1, description="keep the first N dimensions, re-normalised")
    max_tokens: int | None = Field(None, ge=1, description="at least the model's context length (77)")
    truncate: str | None = Field(None, description="END (default: the model reads the first 77 tokens) or NONE")
    priority: int | None = Field(None, description="accepted and ignored")


def _fail(message: str) -> ApiError:
    return ApiError(message, status=400, kind="validation")


def embedding_types(body: CohereEmbedRequest) -> list[str]:
    """The requested types, checked, in order, without repeats (float when none)."""
    wanted = list(dict.fromkeys(body.embedding_types or ["float"]))
    for name in wanted:
        if name in REFUSED_TYPES:
            raise _fail(f"embedding_types: {name} is not available here: Cohere scales int8/uint8 with ranges "
                        "calibrated on its own model's vectors and this model has none; ask for float, base64, "
                        "binary or ubinary")
        if name not in COMPUTED_TYPES:
            raise _fail(f"embedding_types: unknown type {name[:40]!r} (choose from "
                        f"{', '.join(COMPUTED_TYPES + REFUSED_TYPES)})")
    return wanted


def request_units(body: CohereEmbedRequest, policy: FetchPolicy | None) -> list[Unit]:
    """One unit per text, image or input, from whichever of the three the request has."""
    given = [name for name in ("texts", "images", "inputs") if getattr(body, name) is not None]
    if len(given) != 1:
        raise _fail("send exactly one of 'texts', 'images' or 'inputs'" + (f"; got {', '.join(given)}" if given
                                                                           else ""))
    if body.texts is not None:
        if not body.texts:
            raise _fail("texts: expected a non-empty list")
        return [[Part("text", text, f"texts[{i}]")] for i, text in enumerate(body.texts)]
    if body.images is not None:
        if not body.images:
            raise _fail("images: expected a non-empty list of data URIs")
        return [[parse_part({"type": "image_url", "image_url": image}, f"images[{i}]", None, policy)]
                for i, image in enumerate(body.images)]
    return inputs_units(body.inputs, None, policy)


def check_text_options(state: ServeState, body: CohereEmbedRequest, units: list[Unit]) -> None:
    """input_type, truncate and max_tokens: what this model can honour, else a 400 saying why."""
    if body.input_type is not None and body.input_type not in INPUT_TYPES:
        raise _fail(f"input_type: {body.input_type[:40]!r} is not one of {', '.join(INPUT_TYPES)}")
    truncate = (body.truncate or "END").upper()
    if truncate not in TRUNCATE:
        raise _fail(f"truncate: {str(body.truncate)[:20]!r} is not one of {', '.join(TRUNCATE)}")
    if truncate == "START":
        raise _fail("truncate: START is not available here: the model reads the first tokens of a text (END)")
    length = int(state.pipeline.options_for("text")["context_length"])
    if body.max_tokens is not None and body.max_tokens < length:
        raise _fail(f"max_tokens: this model reads {length} tokens of each text; ask for at least that")
    if truncate == "NONE":
        for part in (part for unit in units for part in unit if part.kind == "text"):
            if _too_long(str(part.value), length):
                raise _fail(f"{part.name}: longer than the model's {length} tokens (truncate=NONE)")


def _too_long(text: str, length: int) -> bool:
    from ..preprocess.tokenizer import get_tokenizer

    return len(get_tokenizer().encode(text)) + 2 > length  # with the start and end markers


def encode(vectors: np.ndarray, types: list[str]) -> dict[str, list[Any]]:
    """Cohere's `embeddings` object: one list per requested type, a row per unit."""
    rows = np.asarray(vectors, dtype=np.float32)  # (n, D)
    out: dict[str, list[Any]] = {}
    packed = np.packbits(rows > 0, axis=1)  # (n, ceil(D/8)) uint8, dimension 0 in the top bit
    for name in types:
        if name == "float":
            out[name] = rows.tolist()
        elif name == "base64":
            out[name] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in rows]
        elif name == "ubinary":
            out[name] = packed.tolist()
        else:  # binary
            out[name] = (packed.astype(np.int16) - 128).tolist()
    return out


def image_info(data_url: str, max_bytes: int) -> dict[str, Any] | None:
    """Cohere's image entry {width, height, format, bit_depth} from the image's header; None if not a still image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(decode_base64(data_url, "image", max_bytes))) as image:
            bits = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(image.mode, 8)
            return {"width": image.width, "height": image.height, "format": (image.format or "").lower(),
                    "bit_depth": bits}  # bits per channel sample, as a PNG header counts them
    except (UnidentifiedImageError, OSError, ValueError, BindspaceError):  # not base64 (a fetched URL), not a still
        return None


async def _images_info(state: ServeState, body: CohereEmbedRequest) -> list[dict[str, Any]] | None:
    if not body.images:
        return None
    infos = await asyncio.gather(*(asyncio.to_thread(image_info, image, state.limits.max_item_bytes)
                                   for image in body.images))
    return None if any(info is None for info in infos) else [info for info in infos if info is not None]


@router.post("/v2/embed", summary="Cohere Embed v2: texts, images or content inputs -> embeddings by type.",
             openapi_extra=openapi_body(CohereEmbedRequest))
async def embed(request: Request) -> dict:
    """Cohere's `{id, embeddings: {float: [...], ...}, texts?, images?, meta, response_type}`."""
    state = serve_state(request)
    body = CohereEmbedRequest.model_validate(await read_json(request, empty_status=400))
    types = embedding_types(body)
    policy: FetchPolicy | None = state.extras.get(FETCH_POLICY)
    units = request_units(body, policy)
    check_text_options(state, body, units)
    check_dimensions(state, body.output_dimension, "output_dimension")
    vectors = await with_timeout(request, embed_units(state, units, policy))  # (n, D) unit rows
    vectors = first_dimensions(vectors, body.output_dimension)
    texts = unit_texts(units)
    billed: dict[str, int] = {"input_tokens": token_count(state, texts) if texts else 0}
    media = sum(part.kind != "text" for unit in units for part in unit)
    if media:
        billed["images"] = media
    answer: dict[str, Any] = {"id": str(uuid.uuid4()), "embeddings": encode(vectors, types)}
    if body.texts is not None:
        answer["texts"] = body.texts
    images = await _images_info(state, body)
    if images is not None:
        answer["images"] = images
    answer["meta"] = {"api_version": {"version": "2"}, "billed_units": billed}
    answer["response_type"] = "embeddings_by_type"
    return answer
